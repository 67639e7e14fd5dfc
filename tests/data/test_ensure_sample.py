"""`mmops sample`: the sample lands in data/ exactly as data.dvc records it, and in the DVC cache."""

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from mmops.data.sample import ensure_sample
from tests.conftest import REPO


@pytest.fixture
def dvc_project(tmp_path: Path) -> Path:
    subprocess.run([sys.executable, "-m", "dvc", "init", "--no-scm", "-q"], cwd=tmp_path, check=True)
    shutil.copy(REPO / "data.dvc", tmp_path / "data.dvc")
    return tmp_path


def _status(project: Path) -> str:
    return subprocess.run([sys.executable, "-m", "dvc", "status", "data.dvc"], cwd=project,
                          capture_output=True, text=True, check=True).stdout


def test_sample_is_built_cached_and_dvc_status_is_clean(dvc_project: Path):
    recorded = (dvc_project / "data.dvc").read_text()
    message = ensure_sample(dvc_project / "data", REPO / ".cache" / "npm", dvc_project / "data.dvc")
    assert message.startswith("built 1906 samples")
    assert "up to date" in _status(dvc_project)
    assert (dvc_project / "data.dvc").read_text() == recorded
    assert ensure_sample(dvc_project / "data", REPO / ".cache" / "npm", dvc_project / "data.dvc").endswith(
        "already matches " + str(dvc_project / "data.dvc"))


def test_different_data_is_never_overwritten(dvc_project: Path):
    data = dvc_project / "data"
    data.mkdir()
    (data / "metadata.csv").write_text("sample_id,image,text,label\n")
    recorded = (dvc_project / "data.dvc").read_text()
    with pytest.raises(RuntimeError, match="differs from"):
        ensure_sample(data, REPO / ".cache" / "npm", dvc_project / "data.dvc")
    assert (data / "metadata.csv").read_text() == "sample_id,image,text,label\n"
    assert (dvc_project / "data.dvc").read_text() == recorded
