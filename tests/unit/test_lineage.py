import subprocess
from pathlib import Path

import pytest

from mmops.data.versioning import data_md5
from mmops.registry.lineage import git_commit, lineage_tags


def _repo(tmp_path: Path) -> Path:
    for args in (["init", "-q"], ["config", "user.email", "t@mmops.invalid"], ["config", "user.name", "t"]):
        subprocess.run(["git", *args], cwd=tmp_path, check=True)
    (tmp_path / "code.py").write_text("x = 1\n")
    (tmp_path / "dvc.lock").write_text("a\n")
    (tmp_path / "data.dvc").write_text("outs:\n- md5: abc123.dir\n  path: data\n")
    subprocess.run(["git", "add", "-A"], cwd=tmp_path, check=True)
    subprocess.run(["git", "commit", "-qm", "init"], cwd=tmp_path, check=True)
    return tmp_path


def test_commit_is_dirty_when_code_changed_but_not_when_only_what_dvc_repro_writes_did(tmp_path: Path):
    repo = _repo(tmp_path)
    clean = git_commit(repo)
    assert len(clean) == 40
    (repo / "dvc.lock").write_text("b\n")
    (repo / "artifacts").mkdir()
    (repo / "artifacts" / "metrics.json").write_text("{}\n")  # what dvc repro writes
    assert git_commit(repo) == clean
    (repo / "code.py").write_text("x = 2\n")
    assert git_commit(repo) == f"{clean}-dirty"


def test_commit_is_dirty_when_a_new_file_is_not_committed(tmp_path: Path):
    repo = _repo(tmp_path)
    (repo / "new_module.py").write_text("y = 1\n")
    assert git_commit(repo).endswith("-dirty")


def test_data_md5_is_read_from_the_dvc_file(tmp_path: Path):
    repo = _repo(tmp_path)
    assert data_md5(repo / "data.dvc") == "abc123.dir"
    (repo / "bad.dvc").write_text("outs: []\n")
    with pytest.raises(ValueError, match="bad.dvc"):
        data_md5(repo / "bad.dvc")


def test_lineage_tags_name_code_data_params_stage_and_flow_run(tmp_path: Path):
    repo = _repo(tmp_path)
    tags = lineage_tags(dvc_file=repo / "data.dvc", params_digest="p1", stage="register",
                        flow_run_id=None, cwd=repo)
    assert tags["mmops.data_md5"] == "abc123.dir"
    assert tags["mmops.params_hash"] == "p1"
    assert tags["mmops.prefect_flow_run_id"] == "none"
    assert len(tags["mmops.git_commit"]) == 40


def test_workspace_match_follows_dvc_status(tmp_path: Path):
    import sys

    from mmops.data.versioning import workspace_matches

    subprocess.run([sys.executable, "-m", "dvc", "init", "--no-scm", "-q"], cwd=tmp_path, check=True)
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "a.txt").write_text("one\n")
    subprocess.run([sys.executable, "-m", "dvc", "add", "-q", "data"], cwd=tmp_path, check=True)
    assert workspace_matches(tmp_path / "data.dvc")
    (tmp_path / "data" / "a.txt").write_text("two\n")
    assert not workspace_matches(tmp_path / "data.dvc")
