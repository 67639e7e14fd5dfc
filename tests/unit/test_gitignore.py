"""Git keeps the metrics and plot files (dvc.yaml's `metrics:`/`plots:`) and ignores every other
artifact: experiments then carry their scores, and the tree stays free of generated files."""

import subprocess

import yaml

from mmops.config import Layout
from tests.conftest import REPO


def _ignored(path: str) -> bool:
    code = subprocess.run(["git", "check-ignore", "-q", "--no-index", path], cwd=REPO).returncode
    assert code in (0, 1), f"git check-ignore failed ({code}): not a git repository?"
    return code == 0


def _declared(kind: str) -> set[str]:
    stages = yaml.safe_load((REPO / "dvc.yaml").read_text().replace("${data.root}", "data"))["stages"]
    return {next(iter(e)) if isinstance(e, dict) else e for s in stages.values() for e in s.get(kind, [])}


def _top_level_plots() -> set[str]:
    """The files dvc.yaml's own `plots:` draws (a stage declares them as uncached outputs)."""
    plots = yaml.safe_load((REPO / "dvc.yaml").read_text()).get("plots", [])
    return {next(iter(p)) if isinstance(p, dict) else p for p in plots}


def test_metrics_and_plots_files_are_tracked_by_git():
    for path in _declared("metrics") | _declared("plots") | _top_level_plots():
        assert not _ignored(path), path


def test_every_other_artifact_is_ignored():
    kept = _declared("metrics") | _declared("plots") | _top_level_plots()
    for path in Layout().all_paths().values():
        if str(path) not in kept:
            assert _ignored(str(path)), path
    assert _ignored("artifacts/featurize/.features.pt.abc.tmp")
