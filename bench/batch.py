"""Batch scoring throughput and peak memory: flows/batch_inference.py on the sample's manifest and
on a manifest 10x as long (the same rows repeated under new ids), each in a process of its own,
side by side in one run. Memory should stay flat: one chunk's media at a time.

    .venv/bin/python bench/batch.py                       # after `make run` and `mmops promote`
    .venv/bin/python bench/batch.py --model models:/mmops-classifier@challenger --times 10
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pandas as pd

RUN = """
import resource, runpy, sys
sys.argv = sys.argv[1:]
runpy.run_path("flows/batch_inference.py", run_name="__main__")
print("MAXRSS_KB", resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
"""


def score(manifest: Path, out: Path, model: str) -> tuple[dict, float]:
    """The flow's summary and the process's peak resident memory in MiB."""
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    done = subprocess.run([sys.executable, "-c", RUN, "flows/batch_inference.py", str(manifest), "--root", "data",
                           "--model", model, "--out", str(out)], env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(done.stderr[-3000:])
    peak = int(next(line.split()[1] for line in done.stdout.splitlines() if line.startswith("MAXRSS_KB")))
    return json.loads((out / "summary.json").read_text()), peak / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="models:/mmops-classifier@champion")
    parser.add_argument("--times", type=int, default=10)
    args = parser.parse_args()
    sample = pd.read_csv("data/metadata.csv", dtype=str, keep_default_na=False)
    Path("artifacts").mkdir(exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="bench-batch-", dir="artifacts") as tmp:  # the flow writes in the project only
        large = pd.concat([sample.assign(sample_id=sample["sample_id"] + f"-{i}") for i in range(args.times)])
        manifests = {"sample": Path("data/metadata.csv"), f"{args.times}x sample": Path(tmp) / "large.csv"}
        large.to_csv(manifests[f"{args.times}x sample"], index=False)
        results = {name: score(path, Path(tmp) / name.replace(" ", "_"), args.model) for name, path in manifests.items()}
    print(f"{args.model}, chunks of 256 rows, {os.cpu_count()} CPU cores")
    print(f"{'manifest':<14} {'rows':>7} {'scored':>7} {'rows/s':>8} {'peak MiB':>9} {'accuracy':>9}")
    for name, (summary, peak) in results.items():
        print(f"{name:<14} {summary['rows']:>7} {summary['scored']:>7} {summary['rows_per_second']:>8.1f} "
              f"{peak:>9.0f} {summary.get('accuracy', float('nan')):>9.3f}")
    (small, small_peak), (big, big_peak) = results.values()
    print(f"peak memory {big_peak / small_peak:.2f}x for {big['rows'] / small['rows']:.0f}x the rows")


if __name__ == "__main__":
    main()
