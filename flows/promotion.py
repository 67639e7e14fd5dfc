"""The gate as a Prefect flow: one task, the same function as `mmops promote`.

    python flows/promotion.py                 # from the repo root; no Prefect server needed
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from prefect import flow, task
from prefect.cache_policies import NO_CACHE

from mmops import stages
from mmops.config import load_params

# No retries: scoring and deciding twice would record two decisions.
promote = task(stages.promote, name="promote", cache_policy=NO_CACHE)


@flow(name="mmops-promotion", log_prints=True)
def promotion(params_path: str = "params.yaml") -> dict[str, Any]:
    """Decide on the current challenger: promote it to champion or refuse, with the reasons."""
    result = promote(load_params(Path(params_path)))
    for line in result["checks"]:
        print(line)
    print(f"{result['action']}: champion is {result['champion_after'] or '(none)'}")
    return result


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--params", default="params.yaml")
    promotion(params_path=parser.parse_args().params)
