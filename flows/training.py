"""The training pipeline as a Prefect flow: one task per stage, each the same stage function
that `dvc repro` runs, writing the same artifacts.

    python flows/training.py                 # runs with no Prefect server configured
    python flows/training.py --params other.yaml --artifacts /tmp/artifacts
    python flows/training.py --train-processes 2   # train data-parallel (torchrun; one per GPU)

Unlike `flows/retraining.py` (the scheduled job, through DVC), this runs every stage whatever
changed: a one-off run, e.g. with other params, that leaves dvc.lock alone.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from prefect import flow, task
from prefect.cache_policies import NO_CACHE
from prefect.runtime import flow_run, task_run
from prefect.tasks import exponential_backoff

from mmops import stages
from mmops.config import Layout, Params, load_params
from mmops.project import flow_parser, working_in
from mmops.training import distributed

# Stage outputs are files (DVC's business), not Prefect results: no result caching.
validate = task(stages.validate, name="validate", cache_policy=NO_CACHE)
clean = task(stages.clean, name="clean", cache_policy=NO_CACHE)
split = task(stages.split, name="split", cache_policy=NO_CACHE)
augment = task(stages.augment, name="augment", cache_policy=NO_CACHE)
featurize = task(stages.featurize, name="featurize", cache_policy=NO_CACHE)


@task(name="train", cache_policy=NO_CACHE, retries=1)
def train(params: Params, layout: Layout, params_path: Path, processes: int = 1) -> dict[str, Any]:
    """`stages.train`; a retry continues from the failed attempt's last epoch (its checkpoint).
    With several `processes`, the same stage under torchrun, data-parallel (docs/scaling.md)."""
    if processes > 1:
        return distributed.launch(processes, params_path, layout.root)
    return stages.train(params, layout, resume=task_run.run_count > 1)


evaluate = task(stages.evaluate, name="evaluate", cache_policy=NO_CACHE)
shift = task(stages.shift, name="shift", cache_policy=NO_CACHE)
# Registration talks to the tracking server, which may be remote: retry transient failures. It is
# idempotent within a flow run (a retry finishes the first attempt's version, never a second one).
register = task(stages.register, name="register", cache_policy=NO_CACHE, retries=2,
                retry_delay_seconds=exponential_backoff(backoff_factor=10))

# The stages' progress (epochs, encoding) is logged at INFO; prefect.toml attaches the logger to the run's log.
logging.getLogger("mmops").setLevel(logging.INFO)


@flow(name="mmops-training", log_prints=True)
def training_pipeline(project_dir: str | None = None, params_path: str = "params.yaml",
                      artifacts_dir: str = "artifacts", train_processes: int = 1) -> dict[str, Any]:
    """Validate, clean, split, augment, featurize, train, evaluate, shift and register, in order.
    Relative paths (params, artifacts, and those params.yaml names) are relative to the project.
    `train_processes` > 1 trains data-parallel in that many processes (torchrun, one per GPU)."""
    with working_in(project_dir, __file__):
        params = load_params(Path(params_path))
        layout = Layout(Path(artifacts_dir))
        validate(params, layout)
        clean(params, layout)
        split(params, layout)
        augment(params, layout)
        featurize(params, layout)
        train(params, layout, Path(params_path), train_processes)
        metrics = evaluate(params, layout)
        shift(params, layout)
        registered = register(params, layout, stage="prefect:register", flow_run_id=str(flow_run.id))
    print(f"test scores: {metrics['test']}")
    if registered["registered"]:
        print(f"registered {registered['name']} version {registered['version']} as '{registered['alias']}'")
    else:  # the stage recorded why (an uncommitted tree): the run itself succeeded
        print(f"not registered: {registered['reason']}")
    return {"metrics": metrics, "registered": registered}


def main() -> None:
    parser = flow_parser(__doc__, artifacts=True)
    parser.add_argument("--train-processes", type=int, default=1, help="train data-parallel in this many processes")
    args = parser.parse_args()
    training_pipeline(project_dir=args.project, params_path=args.params, artifacts_dir=args.artifacts,
                      train_processes=args.train_processes)


if __name__ == "__main__":
    main()
