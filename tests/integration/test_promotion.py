"""The registry loop on the real MLflow store (SQLite in a temp project): the gate promotes or
refuses with its reasons, rollback swaps back, history tells it all, and a failure between the
alias moves leaves the champion as it was."""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path

import pytest
import yaml
from mlflow import MlflowClient

from mmops import stages
from mmops.cli import main
from mmops.config import Layout, PromoteParams, load_params
from tests.integration.conftest import LENIENT_GATE, dvc, git, tracking_uri

pytestmark = pytest.mark.slow
NAME = "mmops-classifier"
# The slice trains for 5 epochs on 72 samples: the floors are relaxed so each test decides on purpose.
LENIENT = PromoteParams(**LENIENT_GATE, bootstrap_resamples=200, min_comparison_samples=1)


@pytest.fixture(scope="module")
def registry(project_template, tmp_path_factory):
    project = Path(shutil.copytree(project_template, tmp_path_factory.mktemp("promo") / "p", symlinks=True))
    # a model that takes 4 records per request: the gate must score the test split in parts
    raw = yaml.safe_load((project / "params.yaml").read_text())
    raw["serve"]["max_records"] = 4
    (project / "params.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
    git(project, "commit", "-qam", "serve 4 records per request")
    assert dvc(project, "repro", check=False).returncode == 0
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(project)
        patch.setenv("MLFLOW_TRACKING_URI", tracking_uri(project))
        params = dataclasses.replace(load_params(project / "params.yaml"), promote=LENIENT)
        yield project, params, Layout(project / "artifacts"), MlflowClient(tracking_uri(project))


def _aliases(client):
    return {alias: str(version) for alias, version in client.get_registered_model(NAME).aliases.items()}


def test_promote_refuse_rollback_and_history(registry, capsys):
    project, params, layout, client = registry
    first = stages.promote(params)
    assert first["action"] == "promote" and first["champion_before"] is None
    assert any("no champion yet" in line for line in first["checks"])
    # the decision run carries MLflow's own evaluation of the challenger on the same split
    run = client.get_run(first["run_id"])
    assert run.data.metrics["example_count"] == int(run.data.tags["mmops.test_samples"])
    assert {"accuracy_score", "f1_score", "precision_score", "recall_score"} <= set(run.data.metrics)
    assert any("confusion_matrix" in a.path for a in client.list_artifacts(first["run_id"]))

    stages.register(params, layout)  # v2: the same model again, so per sample it ties the champion
    second = stages.promote(params)
    assert second["action"] == "promote" and second["numbers"]["difference"] == 0
    assert _aliases(client) == {"challenger": "2", "champion": "2", "previous": "1"}

    stages.register(params, layout)  # v3, judged by a floor it cannot reach
    strict = dataclasses.replace(params, promote=dataclasses.replace(LENIENT, min_macro_f1=1.01))
    third = stages.promote(strict)
    assert third["action"] == "refuse"
    assert _aliases(client)["champion"] == "2"
    tags = client.get_model_version(NAME, "3").tags
    assert tags["mmops.gate.decision"] == "refuse" and "floor 1.010" in tags["mmops.gate.reason"]

    back = stages.rollback(params)
    assert (back["champion_before"], back["champion_after"]) == ("2", "1")
    assert _aliases(client) == {"challenger": "3", "champion": "1", "previous": "2"}

    assert main(["history", "--params", str(project / "params.yaml")]) == 0
    printed = [line for line in capsys.readouterr().out.splitlines() if line.strip()]
    assert [line.split()[2:4] for line in printed] == [
        ["promote", "v1"], ["promote", "v2"], ["refuse", "v3"], ["rollback", "v1"]]
    assert "champion none -> 1" in printed[0] and "champion 2 -> 2" in printed[2]

    # each decided version's card shows the decision
    card = Path(client.download_artifacts(client.get_model_version(NAME, "3").run_id, "model_card.html",
                                          str(project / "downloaded")))
    assert "<b>refuse</b>: " in card.read_text() and "floor 1.010" in card.read_text()


def test_each_version_has_a_model_card_linked_from_its_description(registry, capsys):
    project, _, _, client = registry
    version = client.get_model_version_by_alias(NAME, "challenger")
    assert f"model_card.html` in the artifacts of run {version.run_id}" in version.description
    assert main(["card", "challenger", "--out", str(project / "card.html")]) == 0
    assert str(project / "card.html") in capsys.readouterr().out
    page = (project / "card.html").read_text()
    # confusion matrix, reliability diagram, training curves: inlined, and logged as PNG files too
    assert page.startswith("<!doctype html>") and page.count("data:image/png;base64,") == 3
    assert f"{NAME} v{version.version}" in page
    logged = {Path(a.path).name for a in client.list_artifacts(version.run_id, "model_card")}
    assert logged == {"confusion.png", "reliability.png", "training_curves.png"}


def test_lineage_prints_what_produced_a_version_and_the_commands_that_rebuild_it(registry, capsys):
    import subprocess

    project, _, _, client = registry
    version = client.get_model_version_by_alias(NAME, "challenger")
    commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=project, capture_output=True, text=True).stdout.strip()
    md5 = yaml.safe_load((project / "data.dvc").read_text())["outs"][0]["md5"]
    assert main(["lineage", "challenger"]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"{NAME} v{version.version} ")
    assert f"commit       {commit}" in out and f"md5 {md5}" in out
    assert "validation   passed, 0 failure(s)" in out and "produced by  DVC stage register" in out
    assert f"git checkout {commit}" in out and "  dvc repro" in out


def test_a_failure_between_the_alias_moves_leaves_the_champion_as_it_was(registry, monkeypatch):
    project, params, layout, client = registry
    stages.register(params, layout)
    before = _aliases(client)
    real = MlflowClient.set_registered_model_alias

    def fail_on_champion(self, name, alias, version):
        if alias == "champion" and str(version) == before["challenger"]:
            raise ConnectionError("tracking server went away")
        return real(self, name, alias, version)

    monkeypatch.setattr(MlflowClient, "set_registered_model_alias", fail_on_champion)
    with pytest.raises(ConnectionError):
        stages.promote(params)
    assert _aliases(client) == before  # champion and previous both untouched
    [failed] = client.search_runs([client.get_experiment_by_name("mmops-promotions").experiment_id],
                                  filter_string="tags.`mmops.action` = 'failed'")
    assert "registry unchanged" in failed.data.tags["mmops.reason"]


def test_the_gate_scores_the_shift_set_through_both_models_and_refuses_a_regret_above_its_limit(registry):
    project, params, layout, client = registry
    stages.register(params, layout)
    # no fusion can beat its best modality by a whole point of accuracy: this limit refuses any model
    blind = dataclasses.replace(params, promote=dataclasses.replace(LENIENT, max_shift_regret=-1.0))
    decided = stages.promote(blind)
    assert decided["action"] == "refuse"
    [regret] = [r for r in decided["checks"] if "fusion regret" in r]
    assert regret.startswith("FAIL: shift set 'twitter' (") and "rows of the test split's ids" in regret
    assert any(r.startswith("pass: shift set 'twitter' vs champion") for r in decided["checks"])
    assert 0 <= decided["numbers"]["shift_twitter_accuracy"] <= 1
