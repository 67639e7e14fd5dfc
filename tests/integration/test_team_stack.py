"""The project against a team-scale MLflow: `mlflow server` on a real PostgreSQL with a proxied
artifact root (tests/integration/team_stack.py). `dvc repro` registers a model there, the gate
promotes it, and `mlflow models serve` serves the champion from it; the registry rows are read
back from PostgreSQL itself and the artifacts from the artifact root, so a server that quietly
fell back to SQLite or a local ./mlruns fails this test."""

from __future__ import annotations

import base64
import json
import subprocess
import sys
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pytest
import yaml

from tests.conftest import venv_env
from tests.integration.conftest import lenient_params
from tests.integration.servers import served_model
from tests.integration.team_stack import Postgres, mlflow_server, postgres

pytestmark = pytest.mark.slow
NAME = "mmops-classifier"


@dataclass(frozen=True)
class TeamStack:
    url: str  # the tracking server
    db: str  # its backend store, a PostgreSQL database
    artifacts: Path  # its --artifacts-destination
    workdir: Path  # where the server runs
    pg: Postgres


@pytest.fixture(scope="module")
def team(tmp_path_factory) -> TeamStack:
    root = tmp_path_factory.mktemp("team")
    with postgres() as pg:
        db = pg.create_database("mlflow")
        artifacts = root / "mlartifacts"
        with mlflow_server(db, artifacts, root / "server") as url:
            yield TeamStack(url, db, artifacts, root / "server", pg)


def _run(project: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    result = subprocess.run(list(args), cwd=project, env=env, capture_output=True, text=True)
    assert result.returncode == 0, f"{args}:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    return result


def _rows(db: str, query: str, *args) -> list[tuple]:
    import psycopg

    with psycopg.connect(db) as connection:
        return connection.execute(query, args).fetchall()


def _serve(project: Path, env: dict[str, str], record: dict) -> dict:
    """`mlflow models serve` of the champion; one prediction over HTTP."""
    with served_model(f"models:/{NAME}@champion", cwd=project, env=env) as url:
        body = json.dumps({"dataframe_split": {"columns": list(record), "data": [list(record.values())]}})
        request = urllib.request.Request(f"{url}/invocations", body.encode(), {"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=60) as response:
                return json.loads(response.read())
        except urllib.error.HTTPError as err:
            raise AssertionError(err.read().decode()) from None


def test_register_promote_and_serve_through_a_tracking_server_on_postgresql(project, team):
    from mlflow import MlflowClient

    env = venv_env(MLFLOW_TRACKING_URI=team.url)
    client = MlflowClient(team.url)

    # dvc repro: the register stage registers v1 as challenger on the server
    _run(project, env, sys.executable, "-m", "dvc", "repro")
    challenger = client.get_model_version_by_alias(NAME, "challenger")
    assert str(challenger.version) == "1"

    # the gate, with floors a 5-epoch model on 72 samples can pass
    params = lenient_params(project)
    (project / "lenient.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    promoted = _run(project, env, str(Path(sys.executable).parent / "mmops"), "promote", "--params", "lenient.yaml")
    assert "PROMOTED: champion is v1" in promoted.stdout, promoted.stdout
    assert str(client.get_model_version_by_alias(NAME, "champion").version) == "1"

    # the registry and the runs are rows in PostgreSQL
    assert _rows(team.db, "SELECT name FROM registered_models") == [(NAME,)]
    assert _rows(team.db, "SELECT version, run_id FROM model_versions WHERE name = %s", NAME) == [
        (1, challenger.run_id)]
    aliases = dict(_rows(team.db, "SELECT alias, version FROM registered_model_aliases WHERE name = %s", NAME))
    assert aliases == {"challenger": 1, "champion": 1}
    experiments = dict(_rows(team.db, "SELECT name, artifact_location FROM experiments"))
    assert "mmops-promotions" in experiments
    assert all(location.startswith("mlflow-artifacts:") for location in experiments.values()), experiments
    runs = _rows(team.db, "SELECT run_uuid FROM runs")
    assert (challenger.run_id,) in runs and len(runs) >= 2  # the pipeline's run and the gate's decision

    # the artifacts are under the server's artifact root, and nowhere local
    assert list(team.artifacts.rglob("MLmodel")), "no logged model under the artifact root"
    assert list(team.artifacts.rglob(f"{challenger.run_id}/artifacts/model_card.html"))
    for place in (project, team.workdir):
        assert not {"mlruns", "mlartifacts", "mlflow.db"} & {p.name for p in place.iterdir()}, place

    # the champion, served over HTTP from the server's registry and artifacts
    manifest = pd.read_csv(project / "data/metadata.csv", dtype=str)
    image = base64.b64encode((project / "data" / manifest.loc[0, "image"]).read_bytes()).decode()
    answer = _serve(project, env, {"image": image, "text": manifest.loc[0, "text"]})
    (record,) = answer["predictions"]
    assert list(record["probabilities"]) == params["data"]["labels"]
    assert record["label"] == max(record["probabilities"], key=record["probabilities"].get)
    assert record["modalities"] == ["image", "text"]


def test_postgres_starts_from_a_checkout_that_others_cannot_enter(tmp_path, monkeypatch):
    """As root the server runs as `nobody`: binaries in a private checkout (under /root, or a
    `mktemp -d`) and a private TMPDIR must not stop it."""
    import os
    import stat

    import psycopg

    from tests.integration import team_stack

    if os.geteuid() != 0:
        pytest.skip("only root drops to another account")
    private = tmp_path / "private"
    private.mkdir(mode=0o700)
    binaries = team_stack.copy_binaries(team_stack.postgres_bin(), private / "site")
    assert not team_stack.reachable_by_others(binaries)
    monkeypatch.setattr(team_stack, "postgres_bin", lambda: binaries)
    monkeypatch.setenv("TMPDIR", str(private))
    monkeypatch.setattr(team_stack.tempfile, "tempdir", None)  # gettempdir() reads TMPDIR again
    with team_stack.postgres() as pg:
        with psycopg.connect(pg.uri()) as connection:
            assert connection.execute("select 1").fetchone() == (1,)
    assert stat.S_IMODE(private.stat().st_mode) == 0o700  # nothing was opened up
