"""The scheduled retraining deployment on real components: a Prefect server (SQLite, a free
localhost port), the deployment created from prefect.yaml by `prefect deploy`, its schedule read
back through the API, two runs triggered at once and executed by a process worker. Both end
Completed, one after the other (the deployment's concurrency limit makes the second wait), and
each leaves its markdown artifact."""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from tests.conftest import REPO, venv_env
from tests.integration.conftest import git, lenient_params, tracking_uri
from tests.integration.servers import free_port, stop, wait_for_http

pytestmark = pytest.mark.slow

TERMINAL = {"COMPLETED", "FAILED", "CRASHED", "CANCELLED"}


@pytest.fixture
def prefect_env(tmp_path) -> Iterator[dict[str, str]]:
    """A real `prefect server start` on its own home and a free port; the environment pointing at it."""
    port, log = free_port(), tmp_path / "prefect-server.log"
    env = venv_env(PREFECT_HOME=str(tmp_path / "prefect-home"), PREFECT_API_URL=f"http://127.0.0.1:{port}/api",
                   PREFECT_SERVER_ANALYTICS_ENABLED="false", DO_NOT_TRACK="1",
                   # a run waiting for the deployment's slot asks again after 3 s (default 30)
                   PREFECT_SERVER_DEPLOYMENTS_CONCURRENCY_SLOT_WAIT_SECONDS="3",
                   PREFECT_WORKER_QUERY_SECONDS="2", PREFECT_WORKER_PREFETCH_SECONDS="5")
    with log.open("w") as out:
        server = subprocess.Popen([sys.executable, "-m", "prefect", "server", "start", "--host", "127.0.0.1",
                                   "--port", str(port)], env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        wait_for_http(f"http://127.0.0.1:{port}/api/health", server, what="the Prefect server", log=log.read_text)
        yield env
    finally:
        stop(server)


def _deployable(project: Path) -> Path:
    """The test project with the repo's flows and prefect.yaml, and gate floors a 5-epoch model
    on 72 samples can pass (so the first run promotes), committed."""
    shutil.copytree(REPO / "flows", project / "flows", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(REPO / "prefect.yaml", project / "prefect.yaml")
    (project / "params.yaml").write_text(yaml.safe_dump(lenient_params(project), sort_keys=False))
    git(project, "add", "-A")
    git(project, "commit", "-q", "-m", "deployable")
    return project


def _prefect(env: dict[str, str], cwd: Path, *args: str) -> str:
    done = subprocess.run([sys.executable, "-m", "prefect", *args], cwd=cwd, env=env, capture_output=True, text=True)
    assert done.returncode == 0, f"prefect {' '.join(args)}:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return done.stdout


def test_the_nightly_retraining_deployment_runs_on_a_worker_one_run_at_a_time(project, prefect_env, tmp_path):
    from prefect.client.orchestration import SyncPrefectClient
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey, FlowRunFilter, FlowRunFilterId
    from mlflow import MlflowClient

    project = _deployable(project)
    env = {**prefect_env, "MLFLOW_TRACKING_URI": tracking_uri(project)}
    _prefect(env, project, "work-pool", "create", "mmops", "--type", "process")
    _prefect(env, project, "--no-prompt", "deploy", "--name", "retraining")

    with SyncPrefectClient(env["PREFECT_API_URL"]) as client:
        deployment = client.read_deployment_by_name("mmops-retraining/retraining")
        [schedule] = deployment.schedules
        assert (schedule.schedule.cron, schedule.schedule.timezone, schedule.active) == ("0 2 * * *", "UTC", True)
        assert deployment.global_concurrency_limit.limit == 1
        assert deployment.concurrency_options.collision_strategy == "ENQUEUE"
        [pull] = deployment.pull_steps  # the worker runs the flows from the checkout they were deployed from
        assert project.samefile(pull["prefect.deployments.steps.set_working_directory"]["directory"])

        runs = [client.create_flow_run_from_deployment(deployment.id) for _ in range(2)]
        worker_log = tmp_path / "worker.log"
        with worker_log.open("w") as out:
            worker = subprocess.Popen([sys.executable, "-m", "prefect", "worker", "start", "--pool", "mmops"],
                                      cwd=tmp_path, env=env, stdout=out, stderr=subprocess.STDOUT)
        try:
            deadline = time.monotonic() + 600
            while time.monotonic() < deadline:
                runs = [client.read_flow_run(run.id) for run in runs]
                if all(run.state.type.value in TERMINAL for run in runs):
                    break
                time.sleep(3)
        finally:
            stop(worker)
        states = [run.state.type.value for run in runs]
        assert states == ["COMPLETED", "COMPLETED"], f"{states}\n{worker_log.read_text()[-6000:]}"

        first, second = sorted(runs, key=lambda run: run.start_time)
        assert first.end_time <= second.start_time  # never at the same time in one workspace
        waited = [s.name for s in client.read_flow_run_states(second.id)]
        assert "AwaitingConcurrencySlot" in waited

        def artifact(run) -> str:
            found = client.read_artifacts(artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=["retraining"])),
                                          flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[run.id])))
            assert [a.type for a in found] == ["markdown"]
            return found[0].data

        report, again = artifact(first), artifact(second)
    assert "| train | ran |" in report and "Registered **mmops-classifier v1** as `challenger`" in report
    assert "## Gate: promote" in report and "| fused |" in report
    assert "- cleaned manifest: passed" in report
    for checked in ("labels and measures", "features"):  # the first training: nothing to compare with yet
        assert f"- drift of the {checked} against the last training's data: not checked: no reference yet" in report
    assert "| train | up to date (skipped) |" in again and "No new version" in again and "## Gate" not in again
    champion = MlflowClient(tracking_uri(project)).get_model_version_by_alias("mmops-classifier", "champion")
    assert str(champion.version) == "1" and champion.tags["mmops.prefect_flow_run_id"] == str(first.id)
