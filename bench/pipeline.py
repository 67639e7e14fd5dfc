"""Time the pipeline on the sample: each stage run in full, side by side with a no-op
`dvc repro` (every stage cached), in one run on this machine.

    .venv/bin/python bench/pipeline.py          # from the repo root, after `make run`

Stages run into a temporary artifacts folder and a temporary MLflow store, so the repo's own
artifacts and registry are untouched.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from mmops import stages
from mmops.config import Layout, load_params


def main() -> None:
    params = load_params(Path("params.yaml"))
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{tmp}/mlflow.db"
        layout = Layout(Path(tmp) / "artifacts")
        times: dict[str, float] = {}
        for name in stages.STAGES:
            start = time.perf_counter()
            getattr(stages, name)(params, layout)
            times[name] = time.perf_counter() - start
        del os.environ["MLFLOW_TRACKING_URI"]
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "dvc", "repro"], check=True, env=env, capture_output=True)
    noop = time.perf_counter() - start

    full = sum(times.values())
    print(f"{'stage':<10} {'seconds':>8} {'share':>6}")
    for name, seconds in times.items():
        print(f"{name:<10} {seconds:>8.1f} {seconds / full:>6.0%}")
    print(f"{'all':<10} {full:>8.1f}")
    print(f"no-op dvc repro: {noop:.1f} s = {noop / full:.1%} of a full run")


if __name__ == "__main__":
    main()
