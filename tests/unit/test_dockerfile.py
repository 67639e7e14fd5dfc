"""The Dockerfile: lint-clean, installing exactly what `make` installs, multi-stage, serving the
champion as a non-root user with a health check; and the build context kept small."""

import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO


def _instructions() -> list[str]:
    """The Dockerfile's instructions, continuation lines joined, comments dropped."""
    text = re.sub(r"\\\n\s*", " ", (REPO / "Dockerfile").read_text())
    return [line.strip() for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]


def test_the_dockerfile_passes_hadolint_with_no_findings():
    hadolint = Path(sys.executable).parent / "hadolint"  # pinned in the dev extras
    done = subprocess.run([str(hadolint), "--no-color", str(REPO / "Dockerfile")], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr


def test_the_image_installs_with_makes_own_recipe_constraints_and_extras():
    lines = _instructions()
    copied = next(line for line in lines if line.startswith("COPY Makefile"))
    assert {"Makefile", "pyproject.toml", "constraints.txt"} <= set(copied.split()[1:-1])
    assert "RUN make install EXTRAS=" in lines and "RUN make data EXTRAS=" in lines
    assert not any("pip install" in line for line in lines)  # no second install recipe to drift
    makefile = (REPO / "Makefile").read_text()
    assert "-c constraints.txt -e '.$(EXTRAS)'" in makefile and "EXTRAS ?= [dev,whisper]" in makefile


def test_the_served_image_ships_without_the_dev_extras():
    # `make install EXTRAS=` installs `-e '.'`: no pytest, hadolint or test PostgreSQL in the image
    done = subprocess.run(["make", "-n", "-B", "install", "EXTRAS=", "PYTHON=python3"], cwd=REPO,
                          capture_output=True, text=True)
    assert "-e '.'" in done.stdout and "[dev]" not in done.stdout


def test_the_image_is_multi_stage_and_serves_as_a_non_root_user_with_a_health_check():
    lines = _instructions()
    assert lines[0].startswith("ARG BASE=")  # a CUDA (or any) base is one build arg away
    assert [line.split()[1] for line in lines if line.startswith("FROM ")] == ["${BASE}", "${BASE}"]
    assert any(line.startswith("COPY --from=build") for line in lines)
    user = [line for line in lines if line.startswith("USER ")][-1].split()[1]
    assert user.split(":")[0] not in ("0", "root")
    health = next(line for line in lines if line.startswith("HEALTHCHECK"))
    assert "127.0.0.1:5000/ping" in health and "EXPOSE 5000" in lines
    assert "models:/mmops-classifier@champion" in next(line for line in lines if line.startswith("CMD"))


def test_the_served_image_limits_the_request_body_before_it_is_parsed():
    env = next(line for line in _instructions() if line.startswith("ENV ") and "UVICORN_HTTP" in line)
    assert "UVICORN_HTTP=mmops.serving.limits:BodyLimitedHTTP" in env.split()
    assert any(word.startswith("MMOPS_SERVE_MAX_BODY_BYTES=") for word in env.split())


def test_the_build_context_leaves_out_data_venvs_caches_and_mlflow_state():
    ignored = set((REPO / ".dockerignore").read_text().split())
    assert {".venv", "data", "artifacts", "mlruns", "mlartifacts", "mlflow.db", ".cache", "**/__pycache__"} <= ignored


def _engine() -> str | None:
    try:
        done = subprocess.run(["docker", "info"], capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.TimeoutExpired) as err:
        return str(err)
    return None if done.returncode == 0 else (done.stderr.strip().splitlines() or ["docker info failed"])[-1]


@pytest.mark.slow
def test_the_image_builds_and_its_cli_runs():
    reason = _engine()
    if reason is not None:
        pytest.skip(f"no container engine to build with here: {reason}")
    subprocess.run(["docker", "build", "-t", "mmops:test", str(REPO)], check=True)
    done = subprocess.run(["docker", "run", "--rm", "mmops:test", "mmops", "--help"], capture_output=True, text=True)
    assert done.returncode == 0 and "promote" in done.stdout
