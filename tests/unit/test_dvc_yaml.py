"""dvc.yaml and the code agree: same stages, same paths, real params sections, and every module
a stage imports is a dependency of that stage (so editing it reruns the stage)."""

import ast
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from mmops.config import Layout
from mmops.stages import MODULE_OF, STAGES
from tests.conftest import REPO

PARAMS = yaml.safe_load((REPO / "params.yaml").read_text())


def _resolve(text: str) -> str:
    """DVC's `${a.b}` interpolation from params.yaml."""
    def lookup(match: re.Match) -> str:
        node = PARAMS
        for part in match.group(1).split("."):
            node = node[part]
        return str(node)
    return re.sub(r"\$\{([\w.]+)\}", lookup, text)


DVC = yaml.safe_load(_resolve((REPO / "dvc.yaml").read_text()))
PACKAGE = REPO / "src" / "mmops"


def _paths(entries):
    for entry in entries or []:
        yield next(iter(entry)) if isinstance(entry, dict) else entry


def _module_file(name: str) -> Path | None:
    """The file of an `mmops...` module, or None for anything else."""
    if not (name == "mmops" or name.startswith("mmops.")):
        return None
    base = REPO / "src" / Path(*name.split("."))
    return base / "__init__.py" if base.is_dir() else base.with_suffix(".py")


def _imports(tree: ast.AST) -> set[str]:
    """Every mmops module `tree` imports, at any depth (function-local imports included)."""
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
            # `from mmops.models.fusion import late` imports the submodule too
            found |= {f"{node.module}.{alias.name}" for alias in node.names}
    return {name for name in found if _module_file(name) is not None and _module_file(name).exists()}


# Their function-local imports belong to one command or stage each, so only their module-level
# imports are followed (the stage's own function is scanned by `_stage_files`).
ENTRY_POINTS = {"mmops.cli", "mmops.stages", *(f"mmops.stages.{m}" for m in set(MODULE_OF.values()))}


def _top_level_imports(tree: ast.Module) -> set[str]:
    return {n for stmt in tree.body if isinstance(stmt, (ast.Import, ast.ImportFrom)) for n in _imports(stmt)}


def _closure(start: set[str]) -> set[Path]:
    """The files of `start` and of every mmops module they import, with their packages' __init__."""
    seen: set[str] = set()
    todo = set(start)
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        parts = name.split(".")
        todo |= {".".join(parts[:i]) for i in range(1, len(parts))}  # parent packages run first
        tree = ast.parse(_module_file(name).read_text())
        todo |= _top_level_imports(tree) if name in ENTRY_POINTS else _imports(tree)
    return {_module_file(name) for name in seen}


def _stage_files(stage: str) -> set[Path]:
    """What `mmops stage <stage>` runs: the CLI, the stage's module (its module-level imports),
    and the imports inside that stage's function and the helpers it calls."""
    module = f"mmops.stages.{MODULE_OF[stage]}"
    tree = ast.parse(_module_file(module).read_text())
    [func] = [n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == stage]
    helpers = {n.id for n in ast.walk(func) if isinstance(n, ast.Name)}
    local = _imports(func)
    for node in tree.body:  # private helpers the stage calls
        if isinstance(node, ast.FunctionDef) and node.name in helpers:
            local |= _imports(node)
    return _closure(local | {"mmops.cli", "mmops.stages", module})


def test_every_stage_calls_the_cli_stage_of_the_same_name():
    assert tuple(DVC["stages"]) == STAGES
    for name, stage in DVC["stages"].items():
        assert stage["cmd"] == f"mmops stage {name}"


def test_every_layout_path_but_the_registration_record_is_a_declared_output():
    declared = {
        path for stage in DVC["stages"].values()
        for kind in ("outs", "metrics", "plots") for path in _paths(stage.get(kind))
    }
    paths = {name: str(path) for name, path in Layout().all_paths().items()}
    # a new run id each time: as an output it would rewrite dvc.lock on every run
    assert paths.pop("registered") not in declared
    # validate's and featurize's drift records depend on whether a training ran before: not reproducible
    assert paths.pop("drift") not in declared
    assert paths.pop("feature_drift") not in declared
    # training's last-epoch state, for --resume: removed when the run ends, so never an output
    assert paths.pop("train_checkpoint") not in declared
    assert set(paths.values()) == declared


def test_every_dependency_exists_or_is_produced_upstream():
    produced = set()
    for name, stage in DVC["stages"].items():
        for dep in stage["deps"]:
            assert dep in produced or (REPO / dep).exists() or dep == PARAMS["data"]["root"], f"{name}: {dep}"
        produced |= {p for kind in ("outs", "metrics", "plots") for p in _paths(stage.get(kind))}


def test_params_named_in_dvc_yaml_exist_in_params_yaml():
    for stage in DVC["stages"].values():
        for ref in stage.get("params", []):
            node = PARAMS
            for part in ref.split("."):
                assert part in node, ref
                node = node[part]


def test_every_module_a_stage_imports_is_one_of_its_dependencies():
    for name, stage in DVC["stages"].items():
        deps = [REPO / dep for dep in stage["deps"]]
        for path in sorted(_stage_files(name)):
            assert any(path == dep or path.is_relative_to(dep) for dep in deps), \
                f"stage {name} imports {path.relative_to(REPO)} but dvc.yaml does not list it"


def test_the_import_scan_sees_function_local_imports():
    # the scan itself must work, or the test above proves nothing
    files = {p.relative_to(PACKAGE).as_posix() for p in _stage_files("train")}
    assert {"training/train.py", "models/fusion/late.py", "modalities/image.py", "cli.py"} <= files
    split = {p.relative_to(PACKAGE).as_posix() for p in _stage_files("split")}
    assert "training/train.py" not in split and "stages/model.py" not in split and "stages/data.py" in split


def test_the_data_folder_dvc_tracks_is_the_one_params_yaml_reads():
    assert "${data.root}" in (REPO / "dvc.yaml").read_text()
    assert PARAMS["data"]["manifest"].startswith(PARAMS["data"]["root"] + "/")
    assert (REPO / f"{PARAMS['data']['root']}.dvc").exists()


def _stage_and_helpers(stage: str) -> list[ast.AST]:
    tree = ast.parse(_module_file(f"mmops.stages.{MODULE_OF[stage]}").read_text())
    functions = {n.name: n for n in tree.body if isinstance(n, ast.FunctionDef)}
    found, todo = [], [stage]
    while todo:
        node = functions[todo.pop()]
        if node in found:
            continue
        found.append(node)
        todo += [n.id for n in ast.walk(node) if isinstance(n, ast.Name) and n.id in functions and n.id != node.name]
    return found


def _chains(nodes: list[ast.AST], root: str) -> set[str]:
    """Every attribute chain read off `root` (`params.data.labels` -> 'data.labels')."""
    chains = set()
    for node in nodes:
        inner = {id(a.value) for a in ast.walk(node) if isinstance(a, ast.Attribute)}  # only whole chains
        for attr in ast.walk(node):
            if id(attr) in inner:
                continue
            parts = []
            while isinstance(attr, ast.Attribute):
                parts.append(attr.attr)
                attr = attr.value
            if isinstance(attr, ast.Name) and attr.id == root and parts:
                chains.add(".".join(reversed(parts)))
    return chains


def test_every_artifact_a_stage_reads_is_a_dependency_and_every_one_it_writes_an_output():
    layout = Layout()
    for name, stage in DVC["stages"].items():
        declared = set(stage["deps"]) | {p for kind in ("outs", "metrics", "plots") for p in _paths(stage.get(kind))}
        for chain in _chains(_stage_and_helpers(name), "layout"):
            attr = chain.split(".")[0]
            # validate compares new data with the previous training's reference: as a dependency
            # it would be a cycle (stages/data.py check_drift says why it is read anyway)
            if attr in Layout().all_paths() and attr not in ("registered", "drift", "feature_drift", "train_checkpoint") \
                    and (name, attr) != ("validate", "reference"):
                assert str(getattr(layout, attr)) in declared, f"stage {name} uses layout.{attr}, not in dvc.yaml"


def test_every_param_a_stage_reads_is_one_of_its_params():
    methods = {"digest", "to_dict"}  # register logs every param; it lists the sections that shape the model
    for name, stage in DVC["stages"].items():
        listed = set(stage.get("params", []))
        for chain in _chains(_stage_and_helpers(name), "params"):
            parts = chain.split(".")
            if chain == "data.root":  # a stage reading the data folder depends on it as a path
                assert PARAMS["data"]["root"] in stage["deps"], f"stage {name} reads data.root, not in its deps"
                continue
            if parts[0] in methods:
                continue
            prefixes = {".".join(parts[:i]) for i in range(1, len(parts) + 1)}
            assert prefixes & listed, f"stage {name} reads params.{chain}, not in its dvc.yaml params"


def test_no_stage_depends_on_where_the_work_runs():
    # params.yaml `scale:` (shards, the Dask cluster) changes where featurize runs, never what it
    # writes: changing it must rerun nothing.
    assert "scale" in PARAMS
    for stage in DVC["stages"].values():
        assert not any(ref.split(".")[0] == "scale" for ref in stage.get("params", []))


@pytest.mark.skipif(not (REPO / ".dvc").is_dir() or not (REPO / "dvc.lock").is_file(),
                    reason="a copy of the code without the DVC project (tests/mutations.py)")
def test_dvc_lock_records_the_code_and_params():
    """A change to the code or params.yaml without `dvc repro` leaves dvc.lock stale: a fresh
    clone's `make run` would rerun those stages and leave the tree dirty."""
    done = subprocess.run([sys.executable, "-m", "dvc", "status", "--json"], cwd=REPO, capture_output=True,
                          text=True, check=True)
    stale = {(stage, path): change
             for stage, changes in json.loads(done.stdout or "{}").items() for entry in changes
             if isinstance(entry, dict) for path, change in entry.get("changed deps", {}).items()
             if (path.startswith("src/") or path == "params.yaml") and change != "deleted"}
    assert not stale, f"dvc.lock is stale (run `dvc repro` and commit dvc.lock): {stale}"
