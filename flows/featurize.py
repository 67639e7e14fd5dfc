"""The featurize stage in shards on a Dask cluster: the clean manifest and the augmented views
each cut into `scale.shards` runs of rows, one Prefect task per shard run by Prefect's Dask task runner (`prefect-dask`),
the shards' features merged in order into the same feature cache `dvc repro` writes.

    python flows/featurize.py                          # a LocalCluster here (params.yaml `scale:`)
    python flows/featurize.py --params other.yaml --artifacts /tmp/artifacts

It reads artifacts/clean/manifest.csv and artifacts/augment/ (the views of training samples),
so the stages before it must have run (`dvc repro augment`).
Run on the project's own params.yaml and artifacts/, it then runs `dvc commit featurize`:
dvc.lock records the output, and a later `dvc repro` skips the stage. `scale.dask_address`
sends the shards to a running Dask cluster instead (docs/scaling.md); its workers need the
data at the same path as here.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import dask
from prefect import flow, task
from prefect.cache_policies import NO_CACHE
from prefect.client.orchestration import get_client
from prefect_dask import DaskTaskRunner

from mmops.config import Layout, ScaleParams, load_params
from mmops.features import shards
from mmops.project import flow_parser, working_in
from mmops.retraining import dvc
from mmops.stages.model import check_feature_cache, rows_to_encode

# Features are a file (DVC's business), not a Prefect result: no result caching.
encode = task(shards.encode_shard, name="encode-shard", cache_policy=NO_CACHE)

# Dask starts local worker processes with MALLOC_TRIM_THRESHOLD_=65536 and OMP_NUM_THREADS=1,
# and sets them in this process's environment too, where later subprocesses (a `dvc repro` of
# train) would inherit them. The malloc setting alone made torch encode 1.6 to 1.8 times slower
# here; torch's threads are set per task instead (`threads` below). So: none of them.
NO_PRE_SPAWN_ENV = {"distributed.nanny.pre-spawn-environ": {}}


def task_runner(scale: ScaleParams) -> DaskTaskRunner:
    """The cluster at `scale.dask_address`, or a LocalCluster of `scale.local_workers` processes
    with one Dask thread each (torch is not run two tasks at a time in one process)."""
    if scale.dask_address:
        return DaskTaskRunner(address=scale.dask_address)
    # The local workers report their task runs to this flow's Prefect API, also when that is the
    # temporary server of a run with no server configured (else each would start its own).
    with get_client(sync_client=True) as client:
        api = str(client.api_url)
    return DaskTaskRunner(cluster_class="distributed.LocalCluster", cluster_kwargs={
        "n_workers": scale.local_workers, "threads_per_worker": 1, "processes": True,
        "env": {"PREFECT_API_URL": api},
    })


@flow(name="mmops-featurize-shards")
def encode_shards(params_file: str, artifacts_dir: str, count: int, threads: int | None) -> dict[str, Any]:
    """One task per shard of the clean manifest on this flow's task runner; the parts merged in
    order, checked by the feature cache's suite, and saved where `dvc repro` saves them."""
    params, layout = load_params(Path(params_file)), Layout(Path(artifacts_dir))
    parts = rows_to_encode(layout)  # the clean rows, then the augmented views: sharded alike
    futures = [encode.with_options(task_run_name=f"encode-{what}-rows-{start}-{stop}")
               .submit(params, rows.iloc[start:stop], threads=threads, root=root)
               for what, (rows, root) in zip(("clean", "views"), parts)
               for start, stop in shards.shard_ranges(len(rows), count)]
    cache = shards.merge([future.result() for future in futures])  # in shard order, whichever ends first
    check_feature_cache(cache, parts, params, layout)
    cache.save(layout.features)  # atomic: complete or absent
    return {**cache.describe(), "shards": len(futures)}


@flow(name="mmops-featurize", log_prints=True)
def featurize(project_dir: str | None = None, params_path: str = "params.yaml", artifacts_dir: str = "artifacts",
              dvc_commit: bool = True) -> dict[str, Any]:
    """Featurize the clean manifest in shards on the Dask cluster params.yaml's `scale:` names.
    Relative paths are relative to the project. With `dvc_commit`, and when this wrote the
    output dvc.yaml declares from the params it reads, `dvc commit featurize` records it."""
    with working_in(project_dir, __file__) as root:
        # Absolute paths throughout: Dask workers start in directories of their own.
        params_file = (root / params_path).resolve()
        params, layout = load_params(params_file), Layout((root / artifacts_dir).resolve())
        if not layout.clean_manifest.exists():  # before any cluster starts
            raise FileNotFoundError(f"{layout.clean_manifest} does not exist: run the stages before featurize "
                                    "first (dvc repro augment)")
        scale = params.scale
        # Torch takes every core of its machine in each process. Several workers on one machine
        # would then run workers x cores threads on its cores and slow each other down
        # (oversubscription), so each LocalCluster worker takes its share: one thread each for
        # two workers on 2 cores. A remote cluster's workers keep their own setting, one thread
        # (OMP_NUM_THREADS=1) with one worker process per core (docs/scaling.md).
        threads = None if scale.dask_address else shards.local_threads(scale.local_workers)
        with dask.config.set(NO_PRE_SPAWN_ENV):
            result = encode_shards.with_options(task_runner=task_runner(scale))(
                str(params_file), str(layout.root), scale.shards, threads)
        where = scale.dask_address or f"a LocalCluster of {scale.local_workers} worker(s)"
        print(f"featurized {result['samples']} samples in {result['shards']} shard(s) on {where}: {layout.features}")
        declared = (root / "dvc.yaml").exists() and params_file == root / "params.yaml" \
            and layout.features == Layout(root / "artifacts").features
        if dvc_commit and declared:
            dvc(root, "commit", "--force", "featurize")  # dvc.lock: the output and what it was made from
        result["dvc_committed"] = dvc_commit and declared
    return result


def main() -> None:
    parser = flow_parser(__doc__, artifacts=True)
    parser.add_argument("--no-dvc-commit", action="store_true", help="leave dvc.lock alone")
    args = parser.parse_args()
    featurize(project_dir=args.project, params_path=args.params, artifacts_dir=args.artifacts,
              dvc_commit=not args.no_dvc_commit)


if __name__ == "__main__":
    main()
