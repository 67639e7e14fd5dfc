"""The data version: the md5 that a `.dvc` file records, and checking a workspace against it."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import yaml


def data_md5(dvc_file: Path) -> str:
    """The md5 that `dvc_file` (e.g. data.dvc) records for the dataset: its data version."""
    with Path(dvc_file).open(encoding="utf-8") as fh:
        outs = (yaml.safe_load(fh) or {}).get("outs") or []
    if not outs or "md5" not in outs[0]:
        raise ValueError(f"{dvc_file}: no md5 recorded under 'outs'")
    return str(outs[0]["md5"])


def workspace_matches(dvc_file: Path) -> bool:
    """Whether the data in the workspace is exactly what `dvc_file` records (`dvc status`)."""
    dvc_file = Path(dvc_file)
    result = subprocess.run(
        [sys.executable, "-m", "dvc", "status", "--json", dvc_file.name],
        cwd=dvc_file.parent, capture_output=True, text=True,
    )
    return result.returncode == 0 and json.loads(result.stdout or "{}") == {}


def commit_if_matching(dvc_file: Path) -> bool:
    """Hash the workspace data with DVC and store it in the DVC cache if it is exactly what
    `dvc_file` records. Returns whether it matched; `dvc_file` itself is never changed."""
    dvc_file = Path(dvc_file)
    recorded = dvc_file.read_text(encoding="utf-8")
    try:
        subprocess.run(
            [sys.executable, "-m", "dvc", "commit", "--force", "--quiet", dvc_file.name],
            cwd=dvc_file.parent, check=True, capture_output=True, text=True,
        )
        return data_md5(dvc_file) == yaml.safe_load(recorded)["outs"][0]["md5"]
    except subprocess.CalledProcessError as err:
        raise RuntimeError(f"dvc commit {dvc_file} failed: {err.stderr.strip()}") from err
    finally:
        dvc_file.write_text(recorded, encoding="utf-8")
