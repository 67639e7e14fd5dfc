"""dvc.yaml and the code agree: same stages, same paths, real params sections."""

import yaml

from mmops.config import Layout
from mmops.stages import STAGES
from tests.conftest import REPO

DVC = yaml.safe_load((REPO / "dvc.yaml").read_text())


def _paths(entries):
    for entry in entries or []:
        yield next(iter(entry)) if isinstance(entry, dict) else entry


def test_every_stage_calls_the_cli_stage_of_the_same_name():
    assert tuple(DVC["stages"]) == STAGES
    for name, stage in DVC["stages"].items():
        assert stage["cmd"] == f"mmops stage {name}"


def test_every_layout_path_is_a_declared_output():
    declared = {
        path for stage in DVC["stages"].values()
        for kind in ("outs", "metrics", "plots") for path in _paths(stage.get(kind))
    }
    assert {str(path) for path in Layout().all_paths().values()} == declared


def test_every_dependency_exists_or_is_produced_upstream():
    produced = set()
    for name, stage in DVC["stages"].items():
        for dep in stage["deps"]:
            assert dep in produced or (REPO / dep).exists(), f"{name}: {dep}"
        produced |= {p for kind in ("outs", "metrics", "plots") for p in _paths(stage.get(kind))}


def test_params_named_in_dvc_yaml_exist_in_params_yaml():
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    for stage in DVC["stages"].values():
        for ref in stage.get("params", []):
            node = params
            for part in ref.split("."):
                assert part in node, ref
                node = node[part]


def test_every_stage_depends_on_the_code_every_stage_runs():
    shared = {"src/mmops/config.py", "src/mmops/artifacts.py", "src/mmops/stages.py"}
    for name, stage in DVC["stages"].items():
        deps = set(stage["deps"])
        for path in shared:
            assert path in deps or "src/mmops" in deps, f"{name} lacks {path}"
