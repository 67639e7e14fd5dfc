"""Retraining drives the pipeline through DVC: stages in DVC's order, unchanged ones skipped,
every output line logged, and DVC's lock refusing a second run in the same workspace."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from mmops import retraining
from tests.conftest import REPO

STAGE = """
stages:
  double:
    cmd: {python} -c "import pathlib; n = int(pathlib.Path('n.txt').read_text()); print('doubling', n); pathlib.Path('out.txt').write_text(str(2 * n))"
    deps: [n.txt]
    outs: [out.txt]
"""


@pytest.fixture
def dvc_repo(tmp_path: Path) -> Path:
    subprocess.run(["git", "init", "-q"], cwd=tmp_path, check=True)
    subprocess.run([sys.executable, "-m", "dvc", "init", "-q"], cwd=tmp_path, check=True)
    (tmp_path / "dvc.yaml").write_text(STAGE.format(python=sys.executable))
    (tmp_path / "n.txt").write_text("21")
    return tmp_path


def test_the_stages_come_in_the_order_dvc_repro_runs_them(dvc_repo):
    for name in ("dvc.yaml", "params.yaml"):  # the project's pipeline, in a DVC repo of its own
        shutil.copy(REPO / name, dvc_repo / name)
    assert retraining.pipeline_stages(dvc_repo) == list(yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"])


def test_a_stage_runs_when_its_inputs_changed_and_is_skipped_when_not(dvc_repo):
    lines: list[str] = []
    assert retraining.reproduce_stage(dvc_repo, "double", log=lines.append) is True
    assert (dvc_repo / "out.txt").read_text() == "42" and "doubling 21" in lines
    assert retraining.reproduce_stage(dvc_repo, "double", log=lines.append) is False
    (dvc_repo / "n.txt").write_text("5")
    assert retraining.reproduce_stage(dvc_repo, "double", log=lines.append) is True
    assert (dvc_repo / "out.txt").read_text() == "10"
    assert "double" in yaml.safe_load((dvc_repo / "dvc.lock").read_text())["stages"]


def test_a_failing_stage_raises_with_its_last_lines(dvc_repo):
    (dvc_repo / "n.txt").write_text("not a number")
    with pytest.raises(retraining.DvcCommandFailed, match=r"(?s)repro --single-item double.*invalid literal"):
        retraining.reproduce_stage(dvc_repo, "double", log=lambda line: None)


def test_a_second_run_in_the_same_workspace_is_refused_by_dvcs_lock(dvc_repo):
    from dvc.repo import Repo

    repo = Repo(str(dvc_repo))
    with repo.lock:  # what a running `dvc repro` holds
        with pytest.raises(retraining.DvcCommandFailed, match="Unable to acquire lock"):
            retraining.dvc(dvc_repo, "repro", "--single-item", "double", log=lambda line: None)
    repo.close()
    assert not (dvc_repo / "out.txt").exists()


def test_no_remote_means_nothing_to_pull_or_push(dvc_repo):
    assert retraining.default_remote(dvc_repo) is None
    subprocess.run([sys.executable, "-m", "dvc", "remote", "add", "-d", "store", str(dvc_repo.parent / "store")],
                   cwd=dvc_repo, check=True, capture_output=True)
    assert retraining.default_remote(dvc_repo) == "store"


def test_the_report_names_each_suite_the_rejects_and_what_drifted(tmp_path):
    from mmops import artifacts
    from mmops.config import Layout

    layout = Layout(tmp_path)
    suite = {"suite": "s", "subject": "f", "failures": [], "expectations": []}
    artifacts.write_json(layout.validation, {**suite, "success": True, "warnings": ["line 3: label 'Zoo'"]})
    artifacts.write_json(layout.clean_expectations, {**suite, "success": True, "warnings": []})
    artifacts.write_json(layout.clean_metrics, {"rows": 10, "kept": 9, "rejected_by_reason": {"unknown label": 1}})
    note = "40 new rows compared; 60 rows the reference already had left out"
    artifacts.write_json(layout.drift, {"reference": "r.json", "note": note, "seen": 60, "checks": [
        {"drifted": True, "message": "text.length: moved"}, {"drifted": False, "message": "labels: as before"}]})
    artifacts.write_json(layout.feature_drift, {"reference": "r.json", "note": note, "seen": 60, "checks": [
        {"drifted": True, "message": "image features: moved"}, {"drifted": False, "message": "text features: not"}]})
    assert retraining.data_lines(layout) == [
        "", "## Data", "",
        "- raw manifest: passed, 1 row problem(s) left to clean",
        "- cleaned manifest: passed",
        "- clean kept 9 of 10 rows; rejects by reason: {'unknown label': 1}",
        f"- drift of the labels and measures against the last training's data: DRIFTED: text.length: moved ({note})",
        f"- drift of the features against the last training's data: DRIFTED: image features: moved ({note})",
    ]


def test_the_report_says_when_drift_had_nothing_new_or_no_reference(tmp_path):
    from mmops import artifacts
    from mmops.config import Layout

    layout = Layout(tmp_path)
    nothing_new = "no new rows, nothing to compare (all 90 rows are the reference's own)"
    artifacts.write_json(layout.drift, {"reference": "r.json", "rows": 0, "seen": 90, "checks": [], "note": nothing_new})
    artifacts.write_json(layout.feature_drift, {"reference": None, "skipped": "no reference yet"})
    assert retraining.data_lines(layout)[-2:] == [
        "- drift of the labels and measures against the last training's data: no new rows, nothing to compare "
        "(all 90 rows are the reference's own)",
        "- drift of the features against the last training's data: not checked: no reference yet",
    ]
