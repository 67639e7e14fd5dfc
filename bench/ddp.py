"""Data-parallel training against one process, side by side in one run: the train stage on the
pipeline's own features, in 1 process and then under torchrun in 2 (and more with
`--processes`), in a scratch copy of the artifacts it reads. Prints each run's training
samples/s (from the stage's log line: epochs x training rows / seconds of the training loop),
its wall time (process start to end), the ratio to 1 process, and the model each kept.

    .venv/bin/python bench/ddp.py                  # after `make run` (about a minute)
    .venv/bin/python bench/ddp.py --processes 1 2 4 --repeats 3
    .venv/bin/python bench/ddp.py --finetune 2 --repeats 1   # fine-tuning the image encoder (minutes)

With `--finetune EPOCHS`, `train.mode: finetune` for that many epochs: the heavy case, each
step a forward and backward pass through the image encoder; samples/s is then training images
per second over the fine-tuning loop (each epoch's validation encoding included).
"""

from __future__ import annotations

import argparse
import math
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd
import yaml

from mmops.config import Layout

LOG = re.compile(r"train \S+: (\d+) epochs in ([\d.]+) s \((\d+) samples/s\).*kept epoch (\d+) \(val loss ([\d.]+)")
FINETUNE_LOG = re.compile(r"finetune \S+ \([^)]*\): (\d+) epochs in ([\d.]+) s \(([\d.]+) samples/s on \S+\)"
                          r".*kept epoch (\d+) \(val loss ([\d.]+)")


def run(processes: int, params: Path, layout: Layout, log: re.Pattern = LOG) -> dict[str, float]:
    stage = ["-m", "mmops.cli", "stage", "train", "--params", str(params), "--artifacts", str(layout.root)]
    if processes > 1:
        stage = ["-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={processes}", *stage]
    start = time.perf_counter()
    done = subprocess.run([sys.executable, *stage], capture_output=True, text=True, check=True)
    wall = time.perf_counter() - start
    epochs, seconds, rate, kept, loss = log.search(done.stderr).groups()
    history = pd.read_csv(layout.history).set_index("epoch")
    return {"processes": processes, "samples_s": float(rate), "loop_s": float(seconds), "wall_s": wall,
            "kept": int(kept), "val_loss": float(loss),
            "val_acc": float(history["val_acc"].get(int(kept), float("nan")))}  # nan: the probe, epoch 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--artifacts", default="artifacts")
    parser.add_argument("--processes", nargs="+", type=int, default=[1, 2])
    parser.add_argument("--repeats", type=int, default=2, help="runs per setting, interleaved; the best is kept")
    parser.add_argument("--finetune", type=int, default=0, metavar="EPOCHS",
                        help="fine-tune the image encoder for EPOCHS epochs (0: the frozen mode)")
    args = parser.parse_args()
    source, params, log = Layout(Path(args.artifacts)), Path(args.params).resolve(), LOG
    with tempfile.TemporaryDirectory() as scratch:
        layout = Layout(Path(scratch) / "artifacts")
        if args.finetune:
            raw = yaml.safe_load(params.read_text())
            raw["train"].update(mode="finetune", finetune_epochs=args.finetune)
            for key in ("root", "manifest"):  # relative to the params file's folder, which moves
                raw["data"][key] = str(params.parent / raw["data"][key])
            params, log = Path(scratch) / "params.yaml", FINETUNE_LOG
            params.write_text(yaml.safe_dump(raw))
        for path in (source.split_manifest, source.features):
            (layout.root / path.relative_to(source.root)).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(path, layout.root / path.relative_to(source.root))
        shutil.copytree(source.augment, layout.augment)
        results: dict[int, list[dict[str, float]]] = {n: [] for n in args.processes}
        for _ in range(args.repeats):
            for n in args.processes:
                results[n].append(run(n, params, layout, log))
                print(f"  {n} process(es): {results[n][-1]['samples_s']:.0f} samples/s", flush=True)
    best = {n: max(r, key=lambda x: x["samples_s"]) for n, r in results.items()}
    base = best[args.processes[0]]["samples_s"]
    print(f"\nbest of {args.repeats} interleaved runs each")
    print("| processes | samples/s | ratio to 1 | training loop s | wall s | kept epoch | val loss | val acc |")
    print("|---|---|---|---|---|---|---|---|")
    for n, r in best.items():
        acc = "(the probe)" if math.isnan(r["val_acc"]) else f"{r['val_acc']:.3f}"
        print(f"| {n} | {r['samples_s']:.0f} | {r['samples_s'] / base:.2f} | {r['loop_s']:.1f} | {r['wall_s']:.1f} | "
              f"{r['kept']} | {r['val_loss']:.4f} | {acc} |")


if __name__ == "__main__":
    main()
