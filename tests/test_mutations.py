"""The fast tests catch each of the core mutations in tests/mutations.py, each by its named test."""

import subprocess
import sys

import pytest

from tests.conftest import REPO, venv_env

pytestmark = pytest.mark.slow


def test_every_core_mutation_fails_a_fast_test():
    result = subprocess.run([sys.executable, str(REPO / "tests" / "mutations.py")], cwd=REPO,
                            env=venv_env(), capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "baseline: the unmutated copy passes" in result.stdout
    from tests.mutations import MUTATIONS

    killed = [line for line in result.stdout.splitlines() if line.startswith("killed")]
    assert len(killed) == len(MUTATIONS) >= 16  # every mutation ran, and was caught
    for line, (*_, test) in zip(killed, MUTATIONS.values()):
        assert f"by {test}" in line  # by the test it names
