"""The training pipeline as a Prefect flow: one task per stage, each the same stage function
that `dvc repro` runs, writing the same artifacts.

    python flows/training.py                 # runs with no Prefect server configured
    python flows/training.py --params other.yaml --artifacts /tmp/artifacts
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from prefect import flow, task
from prefect.cache_policies import NO_CACHE
from prefect.runtime import flow_run

from mmops import stages
from mmops.config import Layout, load_params

# Stage outputs are files (DVC's business), not Prefect results: no result caching.
validate = task(stages.validate, name="validate", cache_policy=NO_CACHE)
clean = task(stages.clean, name="clean", cache_policy=NO_CACHE)
split = task(stages.split, name="split", cache_policy=NO_CACHE)
featurize = task(stages.featurize, name="featurize", cache_policy=NO_CACHE)
train = task(stages.train, name="train", cache_policy=NO_CACHE)
evaluate = task(stages.evaluate, name="evaluate", cache_policy=NO_CACHE)
# Registration talks to the tracking server, which may be remote: retry transient failures.
register = task(stages.register, name="register", cache_policy=NO_CACHE, retries=2, retry_delay_seconds=10)


@flow(name="mmops-training", log_prints=True)
def training_pipeline(params_path: str = "params.yaml", artifacts_dir: str = "artifacts") -> dict[str, Any]:
    """Validate, clean, split, featurize, train, evaluate and register, in order."""
    params = load_params(Path(params_path))
    layout = Layout(Path(artifacts_dir))
    validate(params, layout)
    clean(params, layout)
    split(params, layout)
    featurize(params, layout)
    train(params, layout)
    metrics = evaluate(params, layout)
    registered = register(params, layout, stage="prefect:register", flow_run_id=str(flow_run.id))
    print(f"test scores: {metrics['test']}")
    print(f"registered {registered['name']} version {registered['version']} as '{registered['alias']}'")
    return {"metrics": metrics, "registered": registered}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--artifacts", default="artifacts")
    args = parser.parse_args()
    training_pipeline(params_path=args.params, artifacts_dir=args.artifacts)


if __name__ == "__main__":
    main()
