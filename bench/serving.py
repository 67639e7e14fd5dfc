"""One-record latency of served models through the real MLflow scoring server, side by side
with the same server answering a trivial model (what MLflow itself costs), in one run.

    .venv/bin/python bench/serving.py                        # after `make run` (+ `mmops promote`)
    .venv/bin/python bench/serving.py --model models:/mmops-classifier/3 --model models:/mmops-classifier/4

Each kind of record (image+text, image-only, text-only) is sent `--requests` times, one record per
request, cycling through the sample's test images and texts; a 32-record request is timed too.
With several models, all are served at once and their requests interleaved, so drift in the
machine's speed hits each alike. Prints p50 and p99 per kind, in milliseconds, and the ratio of
each p50 to the trivial model's.
"""

from __future__ import annotations

import argparse
import base64
import os
import socket
import subprocess
import sys
import tempfile
import time
from contextlib import ExitStack, contextmanager
from pathlib import Path

import mlflow.pyfunc
import numpy as np
import pandas as pd
import requests

BUDGET_MS = 50.0  # image+text p50, the budget for this machine


class Echo(mlflow.pyfunc.PythonModel):
    """The trivial model: MLflow's own parsing, schema handling and JSON, nothing else."""

    def predict(self, context, model_input, params=None):
        return pd.DataFrame({"label": ["x"] * len(model_input)})


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def serving(model: str):
    port = _free_port()
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    env.setdefault("MLFLOW_TRACKING_URI", "sqlite:///mlflow.db")
    server = subprocess.Popen([sys.executable, "-m", "mlflow", "models", "serve", "-m", model, "--env-manager",
                               "local", "-h", "127.0.0.1", "-p", str(port)], env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(300):
            if server.poll() is not None:
                raise SystemExit(f"`mlflow models serve -m {model}` exited; is it registered? (make run)")
            try:
                requests.get(f"{url}/ping", timeout=1)
                break
            except requests.ConnectionError:
                time.sleep(0.5)
        yield url
    finally:
        server.terminate()
        server.wait(timeout=30)


def timed(urls: list[str], bodies: list[dict]) -> list[np.ndarray]:
    """Milliseconds per request for each server, requests interleaved, after a warm-up of three."""
    sessions = [requests.Session() for _ in urls]
    times: list[list[float]] = [[] for _ in urls]
    for i, body in enumerate([*bodies[:3], *bodies]):
        for url, session, out in zip(urls, sessions, times):
            start = time.perf_counter()
            response = session.post(f"{url}/invocations", json={"dataframe_split": body}, timeout=60)
            elapsed = (time.perf_counter() - start) * 1000
            response.raise_for_status()
            if i >= 3:
                out.append(elapsed)
    return [np.array(t) for t in times]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", action="append", help="a model URI (repeat to compare); "
                        "default models:/mmops-classifier@champion")
    parser.add_argument("--requests", type=int, default=200)
    args = parser.parse_args()
    models = args.model or ["models:/mmops-classifier@champion"]

    split = pd.read_csv("artifacts/split/manifest.csv", dtype=str, keep_default_na=False)
    test = split.query("split == 'test'").head(64)
    images = [base64.b64encode((Path("data") / p).read_bytes()).decode() for p in test["image"]]
    texts = test["text"].tolist()
    n = args.requests
    kinds = {
        "image+text": [{"columns": ["image", "text"], "data": [[images[i % 64], texts[i % 64]]]} for i in range(n)],
        "image only": [{"columns": ["image"], "data": [[images[i % 64]]]} for i in range(n)],
        "text only": [{"columns": ["text"], "data": [[texts[i % 64]]]} for i in range(n)],
        "32 x image+text": [{"columns": ["image", "text"], "data": [[images[j], texts[j]] for j in range(32)]}]
        * max(n // 20, 5),
    }

    with tempfile.TemporaryDirectory() as tmp:
        mlflow.pyfunc.save_model(f"{tmp}/echo", python_model=Echo())
        with serving(f"{tmp}/echo") as url:
            (trivial,) = timed([url], kinds["text only"])
    with ExitStack() as stack:
        urls = [stack.enter_context(serving(model)) for model in models]
        results = {kind: timed(urls, bodies) for kind, bodies in kinds.items()}

    base = np.percentile(trivial, 50)
    print(f"{n} one-record requests per kind, {os.cpu_count()} CPU cores")
    print(f"{'model':<36} {'request':<16} {'p50 ms':>8} {'p99 ms':>8} {'p50 / trivial':>14}")
    print(f"{'trivial (MLflow alone)':<36} {'text only':<16} {base:>8.1f} {np.percentile(trivial, 99):>8.1f} {1.0:>14.1f}")
    for kind, per_model in results.items():
        for model, times in zip(models, per_model):
            p50 = np.percentile(times, 50)
            rate = f"   ({32000 / p50:.0f} records/s)" if kind.startswith("32") else ""
            print(f"{model:<36} {kind:<16} {p50:>8.1f} {np.percentile(times, 99):>8.1f} {p50 / base:>14.1f}{rate}")
    for model, times in zip(models, results["image+text"]):
        verdict = "within" if np.percentile(times, 50) <= BUDGET_MS else "OVER"
        print(f"{model}: image+text p50 is {verdict} the {BUDGET_MS:.0f} ms budget")


if __name__ == "__main__":
    main()
