"""Score one registered model with the code it was registered with, in a process of its own.

Run as a script (`python -P own_code_scoring.py MODEL_URI IN OUT`), never imported by it: it must
not import `mmops`, so that loading the model puts the model's own logged copy of `mmops` on the
path before anything imports it. In the gate's own process the installed `mmops` is already
imported, and an older version would be scored with today's code.

IN is a pickle of {"requests": DataFrame, "alone": {column: bool array}, "latency_records": int};
OUT receives a pickle of {"fused": [label], "alone": {column: [label]}, "timings_ms": [float],
"classes": [label] or None} (the classes the model was trained on, in its own order).
"""

from __future__ import annotations

import pickle
import sys
import time

import mlflow.pyfunc
import pandas as pd


def main(uri: str, source: str, target: str) -> None:
    with open(source, "rb") as fh:
        job = pickle.load(fh)
    requests: pd.DataFrame = job["requests"]
    model = mlflow.pyfunc.load_model(uri)
    # the model may cap the records per request (params.yaml `serve.max_records`): send parts
    step = int((model.model_config or {}).get("max_records") or max(len(requests), 1))

    def labels(frame: pd.DataFrame) -> list[str]:
        parts = [model.predict(frame.iloc[i:i + step].reset_index(drop=True))["label"]
                 for i in range(0, len(frame), step)]
        return pd.concat(parts).tolist() if parts else []

    out = {"fused": labels(requests), "alone": {}, "timings_ms": [],
           "classes": getattr(model.unwrap_python_model(), "classes", None)}
    for column, rows in job["alone"].items():
        out["alone"][column] = labels(requests.loc[rows, [column]].reset_index(drop=True))
    for i in range(min(job["latency_records"], len(requests)) + 3):  # the first three warm up
        start = time.perf_counter()
        model.predict(requests.iloc[[i % len(requests)]].reset_index(drop=True))
        out["timings_ms"].append((time.perf_counter() - start) * 1000)
    out["timings_ms"] = out["timings_ms"][3:]
    with open(target, "wb") as fh:
        pickle.dump(out, fh)


if __name__ == "__main__":
    main(*sys.argv[1:4])
