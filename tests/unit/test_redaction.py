"""Store URIs are printed and stored without their credentials: in model_version.json (what
registration returns) and in `mmops summary`, which may read a file written before."""

import json
from types import SimpleNamespace

import pytest

from mmops import cli
from mmops.config import Layout
from mmops.registry import mlflow_registry
from mmops.registry.lineage import redact_uri

TEAM = "postgresql://mlflow:s3cret@db.example.com:5432/mlflow"


@pytest.mark.parametrize(("uri", "shown"), [
    (TEAM, "postgresql://***@db.example.com:5432/mlflow"),
    ("https://alice:pa55@mlflow.example.com/api", "https://***@mlflow.example.com/api"),
    ("https://ghp_tokenonly@mlflow.example.com", "https://***@mlflow.example.com"),
    ("postgresql://db.example.com/mlflow?user=mlflow&password=s3cret&sslmode=require",
     "postgresql://db.example.com/mlflow?user=mlflow&password=***&sslmode=require"),
    ("http://mlflow.example.com:5000", "http://mlflow.example.com:5000"),
    ("sqlite:////app/state/mlflow.db", "sqlite:////app/state/mlflow.db"),
    ("databricks", "databricks"),
])
def test_a_uri_keeps_which_store_it_is_and_loses_its_credentials(uri, shown):
    assert redact_uri(uri) == shown


def test_the_registered_version_records_the_tracking_uri_without_its_credentials(monkeypatch):
    monkeypatch.setattr(mlflow_registry.mlflow, "get_tracking_uri", lambda: TEAM)
    client = SimpleNamespace(set_model_version_tag=lambda *a: None, set_registered_model_alias=lambda *a: None)
    registered = mlflow_registry._finish(client, "m", "3", "run", "0", "challenger", {})
    assert registered.tracking_uri == "postgresql://***@db.example.com:5432/mlflow"


def test_summary_prints_the_tracking_store_without_its_credentials(tmp_path, capsys):
    layout = Layout(tmp_path / "artifacts")
    layout.metrics.parent.mkdir(parents=True)
    layout.metrics.write_text(json.dumps({"test_samples": 3, "test": {"fused": {"accuracy": 1.0, "macro_f1": 1.0}}}))
    layout.registered.parent.mkdir(parents=True)
    # as an mmops from before redaction wrote it
    layout.registered.write_text(json.dumps({"registered": True, "name": "m", "version": "3", "alias": "challenger",
                                             "run_id": "run", "tracking_uri": TEAM}))
    assert cli.main(["summary", "--artifacts", str(layout.root)]) == 0
    out = capsys.readouterr().out
    assert "tracking store: postgresql://***@db.example.com:5432/mlflow" in out and "s3cret" not in out
