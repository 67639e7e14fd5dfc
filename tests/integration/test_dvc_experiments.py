"""Comparing runs the DVC way: `main` and each experiment, with their scores, side by side."""

from __future__ import annotations

import json
import subprocess

import pytest
from mlflow import MlflowClient

from tests.integration.conftest import dvc, git, tracking_uri

pytestmark = pytest.mark.slow
METRICS = "artifacts/evaluate/metrics.json"


def _fused_accuracy(rev: dict) -> float:
    return rev["data"]["metrics"][METRICS]["data"]["test"]["fused"]["accuracy"]


def _git_status(project) -> str:
    return subprocess.run(["git", "status", "--porcelain"], cwd=project, capture_output=True, text=True).stdout


def test_exp_show_and_metrics_diff_compare_main_with_the_other_fusion_methods(project):
    assert dvc(project, "repro", check=False).returncode == 0
    git(project, "add", "-A")
    git(project, "commit", "-qm", "the pipeline's results on main")
    # registering again (a new run id, a new version) leaves the tree and DVC clean
    assert dvc(project, "repro", "-f", "register", check=False).returncode == 0
    assert _git_status(project) == ""
    assert "up to date" in dvc(project, "status").stdout
    # as a fresh clone has it: none of the git-ignored outputs; DVC restores the cached ones
    # and runs what it cannot restore, register included, and the tree stays clean
    subprocess.run(["git", "clean", "-fdqX", "artifacts"], cwd=project, check=True)
    assert dvc(project, "repro", check=False).returncode == 0
    assert _git_status(project) == ""
    assert "up to date" in dvc(project, "status").stdout
    # the other fusion methods (late is main's), with modality dropout and alignment: each trains,
    # scores and compares
    for options in (["train.fusion=concat"], ["train.fusion=gated", "train.modality_dropout=0.3"],
                    ["train.fusion=attention", "train.contrastive_weight=0.1"]):
        result = dvc(project, "exp", "run", "--temp", *[a for o in options for a in ("-S", o)], check=False)
        assert result.returncode == 0, result.stdout + result.stderr

    shown = json.loads(dvc(project, "exp", "show", "--json").stdout)
    # the first row is the workspace, then the baseline commit with its experiments
    [main] = [row for row in shown if row.get("experiments")]
    experiments = {e["revs"][0]["data"]["params"]["params.yaml"]["data"]["train"]["fusion"]: e["revs"][0]
                   for e in main["experiments"]}
    assert set(experiments) == {"concat", "gated", "attention"}
    aligned = experiments["attention"]["data"]["metrics"][METRICS]["data"]["retrieval"]["image->text"]
    assert 0 < aligned["recall@5"] <= 1  # an aligned model reports retrieval
    scores = {"main": _fused_accuracy(main), **{m: _fused_accuracy(rev) for m, rev in experiments.items()}}
    assert all(0.11 < s <= 1 for s in scores.values()), scores  # each loaded, each above chance (9 classes)

    # experiments run on uncommitted params: they do not flood the registry
    versions = MlflowClient(tracking_uri(project)).search_model_versions("name = 'mmops-classifier'")
    assert sorted(int(v.version) for v in versions) == [1, 2, 3]

    diff = dvc(project, "metrics", "diff", "--all", "HEAD", experiments["gated"]["name"], "--json")
    assert diff.returncode == 0 and "failed to load" not in diff.stderr
    change = json.loads(diff.stdout)[METRICS]["test.fused.accuracy"]
    assert change["old"] == scores["main"] and change["new"] == scores["gated"]
