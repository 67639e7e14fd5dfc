"""The gate as a Prefect flow: one task, the same function as `mmops promote`.

    python flows/promotion.py                 # from any directory; no Prefect server needed
"""

from __future__ import annotations

import argparse
import contextlib
from pathlib import Path
from typing import Any

from prefect import flow, task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE

from mmops import stages
from mmops.config import load_params

# No retries: scoring and deciding twice would record two decisions.
promote = task(stages.promote, name="promote", cache_policy=NO_CACHE)

PROJECT = Path(__file__).resolve().parents[1]  # the checkout this file is in: runs from any directory


@flow(name="mmops-promotion", log_prints=True)
def promotion(project_dir: str | None = None, params_path: str = "params.yaml") -> dict[str, Any]:
    """Decide on the current challenger: promote it to champion or refuse, with the reasons."""
    with contextlib.chdir(Path(project_dir).resolve() if project_dir else PROJECT):
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
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--project", default=None, help="the project checkout (default: the one holding this file)")
    parser.add_argument("--params", default="params.yaml", help="relative to the project")
    args = parser.parse_args()
    promotion(project_dir=args.project, params_path=args.params)
