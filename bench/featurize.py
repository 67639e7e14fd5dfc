"""Time featurize on the sample: in one process (`stages.featurize`, what `dvc repro` runs)
beside flows/featurize.py on a Dask LocalCluster of 1 and of 2 workers (one shard per worker),
interleaved, in one run on this machine; and check the sharded features equal the single ones.

    .venv/bin/python bench/featurize.py                # from the repo root, after `make data`
    .venv/bin/python bench/featurize.py --repeats 3

The flow's times are whole runs as a user sees them: the cluster's start and stop (worker
processes importing torch and loading the encoders) and the Prefect runs included, but not the
start of the temporary Prefect server (a team runs one). Everything is written to a temporary
folder; the repo's artifacts and dvc.lock are untouched.
"""

from __future__ import annotations

import argparse
import os
import runpy
import statistics
import tempfile
import time
from pathlib import Path

import torch
import yaml

from mmops import stages
from mmops.config import Layout, load_params
from mmops.features.cache import FeatureCache

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    # The table, not every worker's start and stop (read before Prefect and Dask are imported;
    # the workers inherit them).
    os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
    os.environ.setdefault("DASK_LOGGING__DISTRIBUTED", "error")
    featurize = runpy.run_path(str(ROOT / "flows" / "featurize.py"))["featurize"]
    from prefect import flow

    flow(name="bench-start-prefect")(lambda: None)()  # the temporary Prefect server starts once, untimed

    params = load_params(ROOT / "params.yaml")
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        clean = Layout(tmp / "clean")
        stages.validate(params, clean)
        stages.clean(params, clean)
        raw = yaml.safe_load((ROOT / "params.yaml").read_text())
        raw["data"] = {**raw["data"], "root": str(params.data.root.resolve()),  # the params file is elsewhere
                       "manifest": str(params.data.manifest.resolve())}
        runs = {"1 process": None, "Dask, 1 worker": 1, "Dask, 2 workers": 2}
        for name, workers in runs.items():
            if workers:  # one params file per cluster: the flow reads `scale:` from it
                (tmp / f"{workers}.yaml").write_text(yaml.safe_dump(
                    {**raw, "scale": {"shards": workers, "dask_address": None, "local_workers": workers}}))

        def run(name: str) -> Path:
            layout = Layout(tmp / name.replace(" ", "_").replace(",", ""))
            layout.clean_manifest.parent.mkdir(parents=True, exist_ok=True)
            layout.clean_manifest.write_bytes(clean.clean_manifest.read_bytes())
            if runs[name] is None:
                stages.featurize(params, layout)
            else:
                featurize(project_dir=str(ROOT), params_path=str(tmp / f"{runs[name]}.yaml"),
                          artifacts_dir=str(layout.root), dvc_commit=False)
            return layout.features

        times: dict[str, list[float]] = {name: [] for name in runs}
        outputs = {}
        for repeat in range(args.repeats):
            order = list(runs) if repeat % 2 == 0 else list(reversed(runs))  # drift cancels out
            for name in order:
                start = time.perf_counter()
                outputs[name] = run(name)
                times[name].append(time.perf_counter() - start)
        one = FeatureCache.load(outputs["1 process"])
        worst = 0.0
        for name in runs:
            other = FeatureCache.load(outputs[name])
            assert other.sample_ids == one.sample_ids, name
            worst = max(worst, *((other.features[m] - one.features[m]).abs().max().item() for m in one.features))
            assert all(torch.equal(other.present[m], one.present[m]) for m in one.present), name

    rows = len(one.sample_ids)
    base = statistics.median(times["1 process"])
    print(f"featurize, {rows} samples, {os.cpu_count()} CPU cores, {torch.get_num_threads()} torch threads in "
          f"one process, {args.repeats} interleaved repeats")
    print(f"{'run':<17} {'median s':>9} {'runs s':>14} {'rows/s':>7} {'vs 1 process':>13}")
    for name, seconds in times.items():
        median = statistics.median(seconds)
        print(f"{name:<17} {median:>9.1f} {' '.join(f'{s:.1f}' for s in seconds):>14} {rows / median:>7.1f} "
              f"{median / base:>12.2f}x")
    print(f"largest feature difference from one process: {worst:.1e} (same ids, order and masks)")


if __name__ == "__main__":
    main()
