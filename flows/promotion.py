"""The gate as a Prefect flow: one task, the same function as `mmops promote`.

    python flows/promotion.py                 # from any directory; no Prefect server needed
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from prefect import flow, task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE

from mmops import stages
from mmops.config import load_params
from mmops.project import flow_parser, working_in

# No retries: scoring and deciding twice would record two decisions.
promote = task(stages.promote, name="promote", cache_policy=NO_CACHE)


@flow(name="mmops-promotion", log_prints=True)
def promotion(project_dir: str | None = None, params_path: str = "params.yaml") -> dict[str, Any]:
    """Decide on the current challenger: promote it to champion or refuse, with the reasons."""
    with working_in(project_dir, __file__):
        result = promote(load_params(Path(params_path)))
    for line in result["checks"]:
        print(line)
    print(f"{result['action']}: champion is {result['champion_after'] or '(none)'}")
    # a refusal is the gate working: the run completes, and its decision is this artifact
    checks = "\n".join(f"- {line}" for line in result["checks"])
    create_markdown_artifact(f"## {result['action']}: challenger v{result['challenger']}, champion "
                             f"{result['champion_before'] or '(none)'} -> {result['champion_after'] or '(none)'}\n\n"
                             f"{checks}\n", key="promotion", description="mmops gate decision")
    return result


if __name__ == "__main__":
    args = flow_parser(__doc__).parse_args()
    promotion(project_dir=args.project, params_path=args.params)
