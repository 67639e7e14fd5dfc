"""The Prefect flow runs the same stage functions and writes the same artifacts as dvc repro."""

from __future__ import annotations

import pytest

from mmops.config import Layout
from tests.integration.conftest import lenient_params, tracking_uri

pytestmark = pytest.mark.slow


def test_flow_runs_the_pipeline_from_any_directory_and_tags_the_flow_run(project, prefect_server, monkeypatch,
                                                                         tmp_path_factory):
    from mlflow import MlflowClient

    from flows.training import training_pipeline

    monkeypatch.chdir(tmp_path_factory.mktemp("elsewhere"))  # a worker's own directory
    monkeypatch.setenv("MLFLOW_TRACKING_URI", tracking_uri(project))
    result = training_pipeline(project_dir=str(project), train_processes=2)  # training under torchrun

    for name, path in Layout(project / "artifacts").all_paths().items():
        # training's per-epoch checkpoint is removed once the model is saved
        assert path.exists() != (name == "train_checkpoint"), name
    assert set(result["metrics"]["test"]) == {"fused", "image", "text"}
    version = MlflowClient(tracking_uri(project)).get_model_version_by_alias("mmops-classifier", "challenger")
    assert str(version.version) == result["registered"]["version"]
    assert version.tags["mmops.prefect_flow_run_id"] not in ("", "none")
    assert version.tags["mmops.dvc_stage"] == "prefect:register"


def test_promotion_flow_runs_the_gate_as_one_task_and_completes_when_it_refuses(project, prefect_server,
                                                                               monkeypatch):
    import yaml
    from mlflow import MlflowClient

    from flows.promotion import promotion
    from flows.training import training_pipeline

    monkeypatch.setenv("MLFLOW_TRACKING_URI", tracking_uri(project))
    training_pipeline(project_dir=str(project))
    params = lenient_params(project)
    (project / "lenient.yaml").write_text(yaml.safe_dump(params))
    with (project / ".git" / "info" / "exclude").open("a") as exclude:  # the tree stays clean, to register again
        exclude.write("lenient.yaml\nstrict.yaml\n")
    result = promotion(project_dir=str(project), params_path="lenient.yaml")
    assert result["action"] == "promote" and result["champion_after"] == "1"
    version = MlflowClient(tracking_uri(project)).get_model_version_by_alias("mmops-classifier", "champion")
    assert str(version.version) == "1" and version.tags["mmops.gate.decision"] == "promote"

    # a refusal is the gate working: the flow run completes, the decision in its artifact
    from prefect import get_client

    from mmops import stages
    from mmops.config import Layout, load_params

    monkeypatch.chdir(project)
    assert stages.register(load_params(project / "params.yaml"), Layout(project / "artifacts"))["registered"]  # v2
    params["promote"]["min_macro_f1"] = 1.01
    (project / "strict.yaml").write_text(yaml.safe_dump(params))
    state = promotion(project_dir=str(project), params_path="strict.yaml", return_state=True)
    assert state.is_completed() and state.result()["action"] == "refuse"

    async def decision() -> str:
        async with get_client() as client:
            return next(a.data for a in await client.read_artifacts()
                        if a.key == "promotion" and a.flow_run_id == state.state_details.flow_run_id)

    import asyncio

    markdown = asyncio.run(decision())
    assert "## refuse: challenger v2" in markdown and "floor 1.010" in markdown


def test_a_retried_registration_finishes_the_first_attempts_version(project, prefect_server, monkeypatch):
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    import flows.training as training

    attempts = []
    real = MlflowClient.set_registered_model_alias

    def flaky(self, *args, **kwargs):  # the tracking server drops out once, after the version exists
        attempts.append(args)
        if len(attempts) == 1:
            raise MlflowException("503: tracking server unavailable (simulated)")
        return real(self, *args, **kwargs)

    monkeypatch.setattr(MlflowClient, "set_registered_model_alias", flaky)
    monkeypatch.setattr(training, "register", training.register.with_options(retry_delay_seconds=0))
    monkeypatch.setenv("MLFLOW_TRACKING_URI", tracking_uri(project))
    result = training.training_pipeline(project_dir=str(project))

    client = MlflowClient(tracking_uri(project))
    assert len(attempts) == 2
    assert [str(v.version) for v in client.search_model_versions("name = 'mmops-classifier'")] == ["1"]
    assert str(client.get_model_version_by_alias("mmops-classifier", "challenger").version) == "1"
    assert result["registered"]["version"] == "1"
    runs = client.search_runs([client.get_experiment_by_name("mmops").experiment_id])
    assert len(runs) == 1


def test_on_an_uncommitted_tree_the_flow_completes_and_says_why_it_registered_nothing(project, prefect_server,
                                                                                      monkeypatch):
    from flows.training import training_pipeline

    monkeypatch.setenv("MLFLOW_TRACKING_URI", tracking_uri(project))
    (project / "notes.txt").write_text("work in progress\n")  # a file git would commit: the tree is dirty
    result = training_pipeline(project_dir=str(project))
    assert result["registered"]["registered"] is False
    assert "uncommitted changes" in result["registered"]["reason"]
