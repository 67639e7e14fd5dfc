"""prefect.yaml deploys each flow in flows/: entrypoints that load, parameters the flows take,
the nightly retraining schedule with its time zone, and one retraining run at a time."""

from __future__ import annotations

import inspect

import pytest
import yaml

from tests.conftest import REPO

DEPLOYMENTS = yaml.safe_load((REPO / "prefect.yaml").read_text())["deployments"]
BY_NAME = {d["name"]: d for d in DEPLOYMENTS}


def test_the_four_flows_are_deployed():
    assert set(BY_NAME) == {"training", "retraining", "promotion", "batch-inference"}


@pytest.mark.parametrize("name", sorted(BY_NAME))
def test_each_entrypoint_loads_a_flow_that_takes_the_deployments_parameters(name):
    from prefect.flows import Flow, load_flow_from_entrypoint

    deployment = BY_NAME[name]
    path, _ = deployment["entrypoint"].split(":")
    assert (REPO / path).is_file()
    flow = load_flow_from_entrypoint(str(REPO / deployment["entrypoint"]))
    assert isinstance(flow, Flow)
    taken = inspect.signature(flow.fn).parameters
    assert set(deployment.get("parameters", {})) <= set(taken)
    # runnable from a worker's own directory: every flow can be pointed at a project
    assert "project_dir" in taken


def test_retraining_runs_nightly_in_an_explicit_time_zone_one_run_at_a_time():
    from prefect.client.schemas.schedules import CronSchedule

    retraining = BY_NAME["retraining"]
    [schedule] = retraining["schedules"]
    cron = CronSchedule(cron=schedule["cron"], timezone=schedule["timezone"])
    assert cron.timezone == "UTC" and schedule["active"] is True
    assert cron.cron.split()[2:] == ["*", "*", "*"]  # every day
    assert retraining["concurrency_limit"] == {"limit": 1, "collision_strategy": "ENQUEUE"}


def test_only_the_retraining_deployment_is_scheduled():
    assert [d["name"] for d in DEPLOYMENTS if d.get("schedules")] == ["retraining"]


def test_runs_from_the_repo_root_give_a_fresh_temporary_server_time_to_create_its_database(tmp_path):
    # prefect.toml, read from the working directory: Prefect's default of 20 s is about what a
    # fresh PREFECT_HOME's database takes on 2 cores, and a first `make run DATASET=tuxpaint` died of it
    import os
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")} | {"PREFECT_HOME": str(tmp_path)}
    code = ("from prefect.settings import get_current_settings as s; "
            "print(s().server.ephemeral.startup_timeout_seconds, s().server.analytics_enabled)")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True, check=True)
    timeout, analytics = out.stdout.split()
    assert int(timeout) >= 60 and analytics == "False"
