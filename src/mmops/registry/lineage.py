"""Lineage: what a model was made from, as MLflow tags."""

from __future__ import annotations

import subprocess
from pathlib import Path

from mmops.data.versioning import data_md5, workspace_matches


def git_commit(cwd: Path = Path(".")) -> str:
    """The checked-out commit, with `-dirty` when files git would commit differ from it: changed
    or new (not ignored). dvc.lock and artifacts/ aside: they are what `dvc repro` writes while
    the pipeline runs (the committed metrics files among them)."""
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--", ".", ":(exclude)dvc.lock", ":(exclude)artifacts"], cwd=cwd,
            capture_output=True, text=True, check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return f"{commit}-dirty" if dirty else commit


def lineage_tags(
    *, dvc_file: Path, params_digest: str, stage: str, flow_run_id: str | None, cwd: Path = Path(".")
) -> dict[str, str]:
    """Tags that trace a run to the code, data and params that made it."""
    return {
        "mmops.git_commit": git_commit(cwd),
        "mmops.data_md5": data_md5(dvc_file),
        # false: the data used was not what data.dvc records (edited without `dvc add`)
        "mmops.data_matches_dvc_file": str(workspace_matches(dvc_file)).lower(),
        "mmops.params_hash": params_digest,
        "mmops.dvc_stage": stage,
        "mmops.prefect_flow_run_id": flow_run_id or "none",
    }
