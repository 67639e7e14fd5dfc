"""A real project in a temp git repo: the repo's dvc.yaml, params.yaml and src/, a small slice
of the real sample added with DVC, and its own MLflow store (SQLite)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.conftest import REPO, subset_of_sample, venv_env

PER_CLASS = 8


def dvc(project: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "dvc", *args], cwd=project, env=project_env(project),
        capture_output=True, text=True, check=check,
    )


def git(project: Path, *args: str) -> None:
    subprocess.run(["git", *args], cwd=project, check=True, capture_output=True)


def project_env(project: Path) -> dict[str, str]:
    return venv_env(MLFLOW_TRACKING_URI=tracking_uri(project))


def tracking_uri(project: Path) -> str:
    return f"sqlite:///{project / 'mlflow.db'}"


# Gate floors a 5-epoch model on 72 samples can pass, so a test that means to promote does.
LENIENT_GATE = dict(min_macro_f1=0.0, min_margin_over_best_modality=-1.0, max_p95_latency_ms=60_000,
                    max_shift_regret=1.0, max_shift_drop=1.0)


def lenient_params(project: Path) -> dict:
    """The project's params.yaml with the gate's floors relaxed to LENIENT_GATE."""
    params = yaml.safe_load((project / "params.yaml").read_text())
    params["promote"].update(LENIENT_GATE)
    return params


def make_project(root: Path, sample: Path, *, epochs: int = 5, shift: Path | None = None) -> Path:
    """A git + DVC project with a small slice of the sample, committed; with `shift` (a folder of
    another vendor's drawings), the same slice of it in shift/twitter, as params.yaml lists."""
    root.mkdir(parents=True, exist_ok=True)
    for name in ("dvc.yaml", ".dvcignore", ".gitignore", "constraints.txt"):
        shutil.copy(REPO / name, root / name)
    shutil.copytree(REPO / "src", root / "src", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    params["train"]["epochs"] = epochs
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    subset_of_sample(sample, root / "data", PER_CLASS)
    (root / "shift").mkdir()
    if shift is not None:
        ids = {line.split(",")[0] for line in (root / "data" / "metadata.csv").read_text().splitlines()[1:]}
        subset_of_sample(shift, root / "shift" / "twitter", PER_CLASS, ids)
    (root / "styles").mkdir()  # augment depends on the folder of drawing sets; none listed
    (root / "styles" / ".gitkeep").touch()
    git(root, "init", "-q")
    git(root, "config", "user.email", "test@mmops.invalid")
    git(root, "config", "user.name", "mmops tests")
    dvc(root, "init", "-q")
    dvc(root, "add", "-q", "data")
    if shift is not None:
        dvc(root, "add", "-q", "shift/twitter")
    else:  # the stage depends on the folder; the set listed is absent, which it reports
        (root / "shift" / ".gitkeep").touch()
    git(root, "add", "-A")
    git(root, "commit", "-q", "-m", "project under test")
    return root


@pytest.fixture(scope="session")
def project_template(sample_dir, twitter_dir, tmp_path_factory) -> Path:
    return make_project(tmp_path_factory.mktemp("template") / "project", sample_dir, shift=twitter_dir)


@pytest.fixture
def project(project_template, tmp_path) -> Path:
    """A fresh copy of the template project (git history and DVC state included)."""
    return Path(shutil.copytree(project_template, tmp_path / "project", symlinks=True))


@pytest.fixture(scope="session")
def prefect_server():
    """A real, temporary Prefect server (SQLite) for the whole session's flows."""
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=180):
        yield
