"""Scheduled retraining: the current data version through the DVC pipeline, then the gate.

    python flows/retraining.py                     # this checkout, no Prefect server needed
    prefect deploy --name retraining               # nightly, from prefect.yaml (see the README)

When a DVC remote is set: `dvc pull` first, `dvc push` last. In between, one task per
`dvc.yaml` stage, each reproduced by DVC, so unchanged stages are skipped and dvc.lock stays
true; then the gate, when this run registered a new challenger. The run leaves a markdown
artifact (`retraining`): the stages, the test scores, the data checks (suites, rejects, drift),
the version and the gate's decision.
"""

from __future__ import annotations

from typing import Any

from prefect import flow, task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE
from prefect.runtime import flow_run
from prefect.tasks import exponential_backoff

from mmops import retraining as steps
from mmops import stages
from mmops.cli import FLOW_RUN_ENV
from mmops.config import Layout, load_params
from mmops.project import flow_parser, working_in

# Retries only where a failure can be transient (the DVC remote, the tracking server); the
# register stage is idempotent within a flow run (a retry finishes the first attempt's version).
TRANSIENT = {"retries": 3, "retry_delay_seconds": exponential_backoff(backoff_factor=10), "retry_jitter_factor": 0.5}
pull = task(steps.pull, name="dvc-pull", cache_policy=NO_CACHE, **TRANSIENT)
push = task(steps.push, name="dvc-push", cache_policy=NO_CACHE, **TRANSIENT)
reproduce = task(steps.reproduce_stage, name="reproduce", task_run_name="dvc-repro-{name}", cache_policy=NO_CACHE)
register = reproduce.with_options(**TRANSIENT)
# No retries: a second try would record a second decision.
gate = task(stages.promote, name="promote", cache_policy=NO_CACHE)


@flow(name="mmops-retraining", log_prints=True)
def retraining(project_dir: str | None = None, run_gate: bool = True) -> dict[str, Any]:
    """Pull, reproduce the pipeline through DVC, run the gate on a new challenger, push."""
    with working_in(project_dir, __file__) as root:
        params, layout = load_params(root / "params.yaml"), Layout(root / "artifacts")
        remote = steps.default_remote(root)
        if remote:
            pull(root, stages.dvc_file_of(params))
        env = {FLOW_RUN_ENV: str(flow_run.id)}
        ran = {name: (register if name == "register" else reproduce)(root, name, env=env)
               for name in steps.pipeline_stages(root)}
        new_challenger = ran.get("register") and steps.registration(layout).get("registered")
        decision = gate(params) if run_gate and new_challenger else None
        if remote:
            push(root)
        markdown = steps.report(layout, ran, decision, remote=remote, lock_changed=steps.lock_changed(root))
    create_markdown_artifact(markdown, key="retraining", description="mmops retraining run")
    print(markdown)
    return {"ran": ran, "gate": decision, "remote": remote}


if __name__ == "__main__":
    parser = flow_parser(__doc__, params=False)
    parser.add_argument("--no-gate", action="store_true", help="reproduce and register, but leave promotion to a person")
    args = parser.parse_args()
    retraining(project_dir=args.project, run_gate=not args.no_gate)
