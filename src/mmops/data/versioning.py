"""The data version: the md5 that a `.dvc` file records, and checking a workspace against it."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
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


def build_beside_dvc_file(out_dir: Path, build: Callable[[], str], what: str = "sample") -> str:
    """Build a dataset into the new folder `out_dir` with `build` (which says what it built), and
    check it against the `.dvc` file beside the folder when there is one. An existing folder
    that file records is left as it is; any other existing folder is refused. Returns what was done."""
    out_dir = Path(out_dir)
    dvc_file = out_dir.parent / f"{out_dir.name}.dvc"
    if out_dir.exists():
        if dvc_file.is_file() and commit_if_matching(dvc_file):
            return f"{out_dir}/ already matches {dvc_file}"
        raise FileExistsError(f"{out_dir} already exists; the sample is only built into a new folder")
    built = f"built {build()} into {out_dir}/"
    if not dvc_file.is_file():
        return f"{built}; version it with `dvc add {out_dir}`"
    if not commit_if_matching(dvc_file):
        raise RuntimeError(f"the rebuilt {what} in {out_dir}/ does not match {dvc_file}: "
                           "the build is not deterministic on this machine")
    return f"{built}, matching {dvc_file}"
