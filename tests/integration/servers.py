"""Real servers started by tests: a free localhost port, waiting until one answers, stopping
it, `mlflow models serve` of a registered model, and records sent to it."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_http(url: str, process: subprocess.Popen, *, what: str, timeout: float = 180,
                  log: Callable[[], str] = lambda: "") -> None:
    """Until `url` answers; fails at once, with the log's tail, if `process` exits first."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(url, timeout=5):
                return
        except OSError:
            pass
        if process.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"{what} did not come up (exit {process.poll()}):\n{log()[-4000:]}")
        time.sleep(1)


def stop(process: subprocess.Popen, timeout: float = 30) -> None:
    process.terminate()
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


@contextmanager
def served_model(model_uri: str, *, cwd: Path, env: dict[str, str]) -> Iterator[str]:
    """`mlflow models serve` of `model_uri` in this venv; yields its base URL once /ping answers."""
    port = free_port()
    server = subprocess.Popen(
        [str(Path(sys.executable).parent / "mlflow"), "models", "serve", "-m", model_uri, "--env-manager", "local",
         "-h", "127.0.0.1", "-p", str(port)],
        cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for_http(f"{url}/ping", server, what=f"the model server for {model_uri}")
        yield url
    finally:
        stop(server)


def invoke(url: str, records: dict, timeout: float = 60) -> tuple[int, dict]:
    """POST `records` (pandas split orient: columns, data) to a model server's /invocations; the
    HTTP status and the JSON answer, an error's included."""
    body = json.dumps({"dataframe_split": records}).encode()
    request = urllib.request.Request(f"{url}/invocations", body, {"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())
