"""`dvc repro` end to end on a slice of the real sample, with the real DVC and MLflow."""

from __future__ import annotations

import base64
import io
import json
import shutil
from pathlib import Path

import pandas as pd
import pytest
import yaml
from PIL import Image

from tests.conftest import write_manifest
from tests.integration.conftest import dvc, git, tracking_uri

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def reproduced(project_template, tmp_path_factory) -> tuple[Path, str]:
    project = Path(shutil.copytree(project_template, tmp_path_factory.mktemp("repro") / "p", symlinks=True))
    result = dvc(project, "repro", check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    return project, result.stdout


def _md5(project: Path) -> str:
    return yaml.safe_load((project / "data.dvc").read_text())["outs"][0]["md5"]


def test_repro_scores_fused_and_each_modality_on_test(reproduced):
    project, _ = reproduced
    metrics = json.loads((project / "artifacts/evaluate/metrics.json").read_text())
    split = pd.read_csv(project / "artifacts/split/manifest.csv", dtype=str)
    predictions = pd.read_csv(project / "artifacts/evaluate/predictions.csv", dtype=str)
    # the scores are those of the test rows' predictions, and nothing else
    assert sorted(predictions["sample_id"]) == sorted(split.query("split == 'test'")["sample_id"])
    assert metrics["test_samples"] == len(predictions)
    assert set(metrics["test"]) == {"fused", "image", "text"}
    for name, scores in metrics["test"].items():
        assert scores["accuracy"] == pytest.approx((predictions[f"pred_{name}"] == predictions["label"]).mean())
    # 9 classes (chance: 0.11); even this small slice trained for 5 epochs is far above it
    assert metrics["test"]["fused"]["accuracy"] >= 0.4


def test_repro_registers_a_challenger_carrying_its_lineage(reproduced):
    from mlflow import MlflowClient

    project, _ = reproduced
    client = MlflowClient(tracking_uri(project))
    version = client.get_model_version_by_alias("mmops-classifier", "challenger")
    assert version.tags["mmops.data_md5"] == _md5(project)
    assert version.tags["mmops.data_matches_dvc_file"] == "true"
    assert version.tags["mmops.dvc_stage"] == "register"
    run = client.get_run(version.run_id)
    assert run.data.tags["mmops.data_md5"] == _md5(project)
    assert len(run.data.tags["mmops.git_commit"]) >= 40
    assert "test_fused_accuracy" in run.data.metrics
    assert run.data.params["train.epochs"] == "5"


def test_second_repro_skips_every_stage(reproduced):
    project, _ = reproduced
    again = dvc(project, "repro")
    assert "Data and pipelines are up to date" in again.stdout
    assert "Running stage" not in again.stdout


def test_challenger_serves_raw_inputs_with_a_missing_modality(reproduced, monkeypatch):
    import mlflow

    project, _ = reproduced
    monkeypatch.setenv("MLFLOW_TRACKING_URI", tracking_uri(project))
    model = mlflow.pyfunc.load_model("models:/mmops-classifier@challenger")
    manifest = pd.read_csv(project / "data/metadata.csv", dtype=str)
    image = base64.b64encode((project / "data" / manifest.loc[0, "image"]).read_bytes()).decode()
    out = model.predict(pd.DataFrame({"image": [image, None, image], "text": [manifest.loc[0, "text"], "red apple", None]}))
    labels = yaml.safe_load((project / "params.yaml").read_text())["data"]["labels"]
    assert len(out) == 3 and set(out["label"]) <= set(labels)
    assert ((out["confidence"] > 1 / len(labels)) & (out["confidence"] <= 1)).all()
    # a record is scored on its own: the same image alone gets the same answer in any batch
    alone = model.predict(pd.DataFrame({"image": [image]}))
    assert alone.loc[0, "label"] == out.loc[2, "label"]
    assert alone.loc[0, "confidence"] == pytest.approx(out.loc[2, "confidence"], abs=1e-5)


def test_the_registered_model_carries_and_enforces_the_serve_limits_from_params(reproduced, monkeypatch):
    import mlflow

    project, _ = reproduced
    monkeypatch.setenv("MLFLOW_TRACKING_URI", tracking_uri(project))
    model = mlflow.pyfunc.load_model("models:/mmops-classifier@challenger")
    serve = yaml.safe_load((project / "params.yaml").read_text())["serve"]
    assert model.model_config == serve
    with pytest.raises(mlflow.exceptions.MlflowException, match=f"at most {serve['max_records']} per request"):
        model.predict(pd.DataFrame({"text": ["a"] * (serve["max_records"] + 1)}))


def test_repro_stops_at_validate_naming_the_missing_column(project):
    manifest = pd.read_csv(project / "data/metadata.csv", dtype=str)
    write_manifest(project / "data/metadata.csv", manifest.drop(columns=["text"]).to_dict("records"))
    dvc(project, "add", "-q", "data")
    result = dvc(project, "repro", check=False)
    assert result.returncode != 0
    assert "missing column 'text'" in result.stderr
    assert not (project / "artifacts/clean").exists()


def test_repro_stops_at_validate_naming_a_class_left_without_rows(project):
    manifest = pd.read_csv(project / "data/metadata.csv", dtype=str)
    write_manifest(project / "data/metadata.csv", manifest[manifest["label"] != "Flags"].to_dict("records"))
    dvc(project, "add", "-q", "data")
    result = dvc(project, "repro", check=False)
    assert result.returncode != 0
    assert "no rows for the configured class(es) 'Flags'" in result.stderr
    assert not (project / "artifacts/clean").exists()


def test_a_corrupt_and_a_missing_image_are_rejected_by_clean_and_the_rest_goes_on(project):
    manifest = pd.read_csv(project / "data/metadata.csv", dtype=str)
    victim = project / "data" / manifest.loc[3, "image"]
    victim.write_bytes(victim.read_bytes()[:50])
    (project / "data" / manifest.loc[5, "image"]).unlink()
    dvc(project, "add", "-q", "data")
    git(project, "commit", "-qam", "corrupt one image, lose another")
    result = dvc(project, "repro", "featurize", check=False)
    assert result.returncode == 0, result.stderr
    rejects = pd.read_csv(project / "artifacts/clean/rejects.csv", dtype=str)
    assert list(rejects["sample_id"]) == [manifest.loc[3, "sample_id"], manifest.loc[5, "sample_id"]]
    assert rejects.loc[0, "reason"].startswith("unreadable image")
    assert rejects.loc[1, "reason"] == "image file not found"
    kept = pd.read_csv(project / "artifacts/clean/manifest.csv", dtype=str)
    assert len(kept) == len(manifest) - 2


def test_challenger_is_served_over_http_by_mlflow(reproduced):
    """`mlflow models serve --env-manager local` serves raw inputs with no extra server code."""
    from tests.integration.conftest import project_env
    from tests.integration.servers import invoke as post
    from tests.integration.servers import served_model

    project, _ = reproduced

    with served_model("models:/mmops-classifier@challenger", cwd=project, env=project_env(project)) as url:
        manifest = pd.read_csv(project / "data/metadata.csv", dtype=str)
        image = base64.b64encode((project / "data" / manifest.loc[0, "image"]).read_bytes()).decode()
        labels = yaml.safe_load((project / "params.yaml").read_text())["data"]["labels"]
        for columns, row in ((["image", "text"], [image, manifest.loc[0, "text"]]), (["image"], [image]),
                             (["text"], ["red apple"])):
            status, answer = post(url, {"columns": columns, "data": [row]})
            assert status == 200, answer
            (record,) = answer["predictions"]
            assert list(record["probabilities"]) == labels
            assert sum(record["probabilities"].values()) == pytest.approx(1, abs=1e-5)
            assert record["label"] == max(record["probabilities"], key=record["probabilities"].get)
            assert record["modalities"] == columns and list(record["explanation"]) == columns
            shares = [record["explanation"][m]["share"] for m in columns]
            assert sum(shares) == pytest.approx(record["confidence"], abs=1e-5)  # late fusion: exact
        buffer = io.BytesIO()
        Image.new("RGB", (8, 8)).save(buffer, format="TIFF")
        refused = [
            ({"columns": ["text"], "data": [[""]]}, "record(s) [0]: need at least one of 'image' or 'text'"),
            ({"columns": ["foo"], "data": [["x"]]}, "none of the model's columns: 'image' or 'text'"),
            ({"columns": ["text"], "data": []}, "the request has no records"),
            ({"columns": ["text"], "data": [[5]]}, "record 0: 'text': must be a string"),
            ({"columns": ["image"], "data": [[base64.b64encode(buffer.getvalue()).decode()]]},
             "record 0: 'image': unreadable image: not a PNG"),
        ]
        for records, reason in refused:
            status, answer = post(url, records)
            assert status == 400 and reason in answer["message"], (records, answer)
            assert "stack_trace" not in answer and "Traceback" not in json.dumps(answer)
