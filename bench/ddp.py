"""Data-parallel training against one process, side by side in one run: the train stage on the
pipeline's own features, in 1 process and then under torchrun in 2 (and more with
`--processes`), in a scratch copy of the artifacts it reads. Prints each run's training
samples/s (from the stage's log line: epochs x training rows / seconds of the training loop),
its wall time (process start to end), the ratio to 1 process, and the model each kept.

    .venv/bin/python bench/ddp.py                  # after `make run` (about a minute)
    .venv/bin/python bench/ddp.py --processes 1 2 4 --repeats 3
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd

from mmops.config import Layout

LOG = re.compile(r"train \S+: (\d+) epochs in ([\d.]+) s \((\d+) samples/s\).*kept epoch (\d+) \(val loss ([\d.]+)")


def run(processes: int, params: Path, layout: Layout) -> dict[str, float]:
    stage = ["-m", "mmops.cli", "stage", "train", "--params", str(params), "--artifacts", str(layout.root)]
    if processes > 1:
        stage = ["-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={processes}", *stage]
    start = time.perf_counter()
    done = subprocess.run([sys.executable, *stage], capture_output=True, text=True, check=True)
    wall = time.perf_counter() - start
    epochs, seconds, rate, kept, loss = LOG.search(done.stderr).groups()
    history = pd.read_csv(layout.history)
    return {"processes": processes, "samples_s": float(rate), "loop_s": float(seconds), "wall_s": wall,
            "kept": int(kept), "val_loss": float(loss), "val_acc": float(history["val_acc"].iloc[int(kept) - 1])}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--artifacts", default="artifacts")
    parser.add_argument("--processes", nargs="+", type=int, default=[1, 2])
    parser.add_argument("--repeats", type=int, default=2, help="runs per setting, interleaved; the best is kept")
    args = parser.parse_args()
    source = Layout(Path(args.artifacts))
    with tempfile.TemporaryDirectory() as scratch:
        layout = Layout(Path(scratch) / "artifacts")
        for path in (source.split_manifest, source.features):
            (layout.root / path.relative_to(source.root)).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(path, layout.root / path.relative_to(source.root))
        shutil.copytree(source.augment, layout.augment)
        results: dict[int, list[dict[str, float]]] = {n: [] for n in args.processes}
        for _ in range(args.repeats):
            for n in args.processes:
                results[n].append(run(n, Path(args.params).resolve(), layout))
                print(f"  {n} process(es): {results[n][-1]['samples_s']:.0f} samples/s", flush=True)
    best = {n: max(r, key=lambda x: x["samples_s"]) for n, r in results.items()}
    base = best[args.processes[0]]["samples_s"]
    print(f"\nbest of {args.repeats} interleaved runs each")
    print("| processes | samples/s | ratio to 1 | training loop s | wall s | kept epoch | val loss | val acc |")
    print("|---|---|---|---|---|---|---|---|")
    for n, r in best.items():
        print(f"| {n} | {r['samples_s']:.0f} | {r['samples_s'] / base:.2f} | {r['loop_s']:.1f} | {r['wall_s']:.1f} | "
              f"{r['kept']} | {r['val_loss']:.4f} | {r['val_acc']:.3f} |")


if __name__ == "__main__":
    main()
