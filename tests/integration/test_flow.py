"""The Prefect flow runs the same stage functions and writes the same artifacts as dvc repro."""

from __future__ import annotations

import pytest

from mmops.config import Layout
from tests.conftest import REPO
from tests.integration.conftest import tracking_uri

pytestmark = pytest.mark.slow


def test_flow_runs_the_pipeline_and_tags_the_flow_run(project, prefect_server, monkeypatch):
    from mlflow import MlflowClient

    monkeypatch.syspath_prepend(str(REPO / "flows"))
    from training import training_pipeline

    monkeypatch.chdir(project)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", tracking_uri(project))
    result = training_pipeline(params_path="params.yaml", artifacts_dir="artifacts")

    for name, path in Layout(project / "artifacts").all_paths().items():
        assert path.exists(), name
    assert set(result["metrics"]["test"]) == {"fused", "image", "text"}
    version = MlflowClient(tracking_uri(project)).get_model_version_by_alias("mmops-classifier", "challenger")
    assert str(version.version) == result["registered"]["version"]
    assert version.tags["mmops.prefect_flow_run_id"] not in ("", "none")
    assert version.tags["mmops.dvc_stage"] == "prefect:register"


def test_promotion_flow_runs_the_gate_as_one_task(project, prefect_server, monkeypatch):
    import yaml
    from mlflow import MlflowClient

    monkeypatch.syspath_prepend(str(REPO / "flows"))
    from promotion import promotion
    from training import training_pipeline

    monkeypatch.chdir(project)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", tracking_uri(project))
    training_pipeline(params_path="params.yaml", artifacts_dir="artifacts")
    params = yaml.safe_load((project / "params.yaml").read_text())
    # a 5-epoch model on 72 samples: floors low enough for this test to promote on purpose
    params["promote"].update(min_macro_f1=0.0, min_margin_over_best_modality=-1.0, max_p95_latency_ms=60000)
    (project / "lenient.yaml").write_text(yaml.safe_dump(params))
    result = promotion(params_path="lenient.yaml")
    assert result["action"] == "promote" and result["champion_after"] == "1"
    version = MlflowClient(tracking_uri(project)).get_model_version_by_alias("mmops-classifier", "champion")
    assert str(version.version) == "1" and version.tags["mmops.gate.decision"] == "promote"
