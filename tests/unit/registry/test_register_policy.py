"""What registers: only a model its lineage can rebuild (committed code, params and data.dvc)."""

import subprocess

from mlflow import MlflowClient

from mmops import artifacts, stages
from mmops.config import Layout
from mmops.data.expectations import SuiteResult
from tests.conftest import TINY_LABELS, make_params


def _git(repo, *args):
    subprocess.run(["git", *args], cwd=repo, check=True, capture_output=True)


def test_register_on_an_uncommitted_tree_records_why_and_registers_nothing(tmp_path, monkeypatch):
    (tmp_path / "data").mkdir()
    (tmp_path / "data.dvc").write_text("outs:\n- md5: abc123.dir\n  path: data\n")
    (tmp_path / "params.yaml").write_text("train: {lr: 0.003}\n")
    _git(tmp_path, "init", "-q")
    _git(tmp_path, "-c", "user.email=t@mmops.invalid", "-c", "user.name=t", "commit", "-q", "--allow-empty", "-m", "x")
    _git(tmp_path, "add", "-A")
    _git(tmp_path, "-c", "user.email=t@mmops.invalid", "-c", "user.name=t", "commit", "-q", "-m", "project")
    (tmp_path / "params.yaml").write_text("train: {lr: 0.1}\n")  # what `dvc exp run -S train.lr=0.1` does
    monkeypatch.chdir(tmp_path)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    layout = Layout(tmp_path / "artifacts")
    for path in (layout.validation, layout.clean_expectations, layout.feature_expectations):  # the suites ran
        artifacts.write_json(path, SuiteResult(path.parent.name, str(path), True, [], [], []).to_dict())
    artifacts.write_text(layout.rejects, "line,sample_id,image,reason\n")
    record = stages.register(make_params(tmp_path / "data", labels=TINY_LABELS), layout)
    assert record["registered"] is False and "uncommitted changes" in record["reason"]
    assert record["mmops.git_commit"].endswith("-dirty")
    assert layout.registered.exists() and layout.data_report.exists()  # DVC outputs, written either way
    assert MlflowClient(uri).search_registered_models() == []


def test_register_on_data_that_differs_from_data_dvc_records_why_and_registers_nothing(tmp_path, monkeypatch):
    import sys

    def dvc(*args):
        subprocess.run([sys.executable, "-m", "dvc", *args], cwd=tmp_path, check=True, capture_output=True)

    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "metadata.csv").write_text("sample_id,label\n1,a\n")
    _git(tmp_path, "init", "-q")
    dvc("init", "-q")
    dvc("add", "-q", "data")
    _git(tmp_path, "add", "-A")
    _git(tmp_path, "-c", "user.email=t@mmops.invalid", "-c", "user.name=t", "commit", "-q", "-m", "data")
    (tmp_path / "data" / "metadata.csv").write_text("sample_id,label\n1,a\n2,b\n")  # data/ edited, not `dvc add`ed
    monkeypatch.chdir(tmp_path)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    layout = Layout(tmp_path / "artifacts")
    for path in (layout.validation, layout.clean_expectations, layout.feature_expectations):
        artifacts.write_json(path, SuiteResult(path.parent.name, str(path), True, [], [], []).to_dict())
    artifacts.write_text(layout.rejects, "line,sample_id,image,reason\n")
    record = stages.register(make_params(tmp_path / "data", labels=TINY_LABELS), layout)
    assert record["registered"] is False and "is not what data.dvc records" in record["reason"]
    assert not record["mmops.git_commit"].endswith("-dirty")  # the code is committed: the data is the reason
    assert MlflowClient(uri).search_registered_models() == []
