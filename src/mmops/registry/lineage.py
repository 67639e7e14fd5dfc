"""Lineage: what a model was made from, as MLflow tags, and read back from the registry."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit

from mlflow.exceptions import MlflowException

from mmops.data.versioning import data_md5, workspace_matches


# query parameters that carry a secret in store URIs (`?password=` for PostgreSQL, tokens, keys)
_SECRET_PARAMETER = re.compile(r"pass|secret|token|key|credential|auth|signature", re.IGNORECASE)
REDACTED = "***"


def redact_uri(uri: str) -> str:
    """`uri` safe to print or store: its user info (`user:password@`, a token) and any query
    parameter that holds a secret replaced by `***`; the rest (scheme, host, port, path) kept,
    so it still says which store it was."""
    try:
        parts = urlsplit(uri)
    except ValueError:
        return REDACTED  # not a URI we can take apart: print none of it
    # edited in place, not rebuilt: urlunsplit would turn `sqlite:////abs/path` into `sqlite://abs/path`
    if "@" in parts.netloc:
        uri = uri.replace(f"//{parts.netloc.rpartition('@')[0]}@", f"//{REDACTED}@", 1)
    if parts.query:
        query = urlencode([(k, REDACTED if _SECRET_PARAMETER.search(k) else v)
                           for k, v in parse_qsl(parts.query, keep_blank_values=True)], safe="*")
        uri = uri.replace(f"?{parts.query}", f"?{query}", 1)
    return uri


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


def _logged_json(client: Any, run_id: str, path: str) -> dict[str, Any] | None:
    try:
        return json.loads(Path(client.download_artifacts(run_id, path)).read_text())
    except (MlflowException, OSError, ValueError):  # an older run may not have logged it
        return None


def version_lineage(client: Any, name: str, version: str) -> dict[str, Any]:
    """What produced a registered version, from the registry alone (its tags and its run's
    logged artifacts): commit, data version, params hash, the flow run, the validation result."""
    found = client.get_model_version(name, version)
    tags = found.tags
    validation = _logged_json(client, found.run_id, "pipeline/validate/validation.json") or {}
    cleaning = _logged_json(client, found.run_id, "pipeline/clean/metrics.json") or {}
    aliases = [alias for alias, v in client.get_registered_model(name).aliases.items() if str(v) == str(version)]
    return {
        "name": name, "version": str(version), "run_id": found.run_id, "aliases": aliases,
        "registered": found.creation_timestamp,
        "commit": tags.get("mmops.git_commit", "unknown"),
        "data_md5": tags.get("mmops.data_md5", "unknown"),
        "data_matched_dvc_file": tags.get("mmops.data_matches_dvc_file", "unknown"),
        "params_hash": tags.get("mmops.params_hash", "unknown"),
        "stage": tags.get("mmops.dvc_stage", "unknown"),
        "flow_run": tags.get("mmops.prefect_flow_run_id", "none"),
        "validation": {"success": validation.get("success"), "failures": len(validation.get("failures", []))},
        "cleaning": {k: cleaning[k] for k in ("rows", "kept", "rejected") if k in cleaning},
    }


def rebuild_commands(lineage: dict[str, Any]) -> list[str]:
    """The commands that rebuild a version from its lineage, in a clone of the repository."""
    commit = lineage["commit"]
    if commit in ("unknown", "") or commit.endswith("-dirty"):
        return [f"# not rebuildable exactly: trained from {commit!r} (uncommitted or no git)"]
    return [
        f"git checkout {commit}",
        "make install",
        f"dvc pull data.dvc     # or `mmops sample` for the embedded sample; data md5 {lineage['data_md5']}",
        "dvc repro              # every stage from that commit's params.yaml "
        f"(params hash {lineage['params_hash']})",
    ]
