"""Retraining through DVC: pull the data version, reproduce the pipeline one stage at a time
(DVC skips what has not changed and keeps dvc.lock true), push, and the report a run leaves.

Each stage is reproduced by the `dvc` command, not DVC's Python API, on purpose: the stage's
own command runs as a child process either way, and reading its output line by line is what
puts every stage's log (epochs, encoding progress) into the orchestrator's log as it happens.
One process per stage also means DVC's own lock stops a second run in the same workspace.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import deque
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from mmops.config import Layout

# Where each output line goes; by default print, looked up when called, so that a Prefect task
# with log_prints sends it to the run's log.
Log = Callable[[str], None]


def _print(line: str) -> None:
    print(line)


class DvcCommandFailed(RuntimeError):
    """A `dvc` command exited non-zero; the message carries its last lines of output."""


def dvc(root: Path, *args: str, log: Log | None = None, env: Mapping[str, str] | None = None) -> None:
    """Run `dvc <args>` in `root`, each output line passed to `log` as it comes."""
    log = log or _print
    command = [sys.executable, "-m", "dvc", *args]
    tail: deque[str] = deque(maxlen=20)
    with subprocess.Popen(command, cwd=root, env={**os.environ, **(env or {})}, text=True, bufsize=1,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT) as proc:
        assert proc.stdout is not None
        for line in proc.stdout:
            line = line.rstrip()
            if line:
                tail.append(line)
                log(line)
    if proc.returncode:
        raise DvcCommandFailed(f"`dvc {' '.join(args)}` in {root} exited with {proc.returncode}:\n" + "\n".join(tail))


def default_remote(root: Path) -> str | None:
    """The project's default DVC remote, or None when it has none (then nothing is pulled or pushed)."""
    from dvc.repo import Repo

    with Repo(str(root)) as repo:
        return repo.config["core"].get("remote")


def pull(root: Path, data: Path, *, log: Log | None = None) -> None:
    """Fetch the data version `data` (a .dvc file) records, then whatever stage outputs earlier
    runs pushed (missing ones are fine: their stages run)."""
    dvc(root, "pull", str(data), log=log)
    dvc(root, "pull", "--allow-missing", log=log)


def push(root: Path, *, log: Log | None = None) -> None:
    """Send this run's outputs to the remote, so another checkout of its dvc.lock can pull them."""
    dvc(root, "push", log=log)


def pipeline_stages(root: Path) -> list[str]:
    """The names of `dvc.yaml`'s stages in the order `dvc repro` runs them."""
    from dvc.repo import Repo
    from dvc.repo.reproduce import plan_repro
    from dvc.stage import PipelineStage

    with Repo(str(root)) as repo:
        return [stage.name for stage in plan_repro(repo.index.graph) if isinstance(stage, PipelineStage)]


def stage_changed(root: Path, name: str) -> bool:
    """Whether DVC would run `name` now (its deps, params, command or outputs changed)."""
    from dvc.repo import Repo

    with Repo(str(root)) as repo:
        return bool(repo.status(targets=[f"{root / 'dvc.yaml'}:{name}"]))  # a bare name would be looked up from the cwd


def reproduce_stage(root: Path, name: str, *, log: Log | None = None, env: Mapping[str, str] | None = None) -> bool:
    """Reproduce one stage with DVC (its upstream stages must already be up to date); True when it
    ran, False when DVC found nothing changed and skipped it."""
    log = log or _print
    if not stage_changed(root, name):
        log(f"stage '{name}' is up to date: skipped")
        return False
    dvc(root, "repro", "--single-item", name, log=log, env=env)
    return True


def lock_changed(root: Path) -> bool:
    """Whether dvc.lock differs from the commit (the run produced outputs not yet committed)."""
    status = subprocess.run(["git", "status", "--porcelain", "--", "dvc.lock"], cwd=root,
                            capture_output=True, text=True, check=False).stdout
    return bool(status.strip())


def registration(layout: Layout) -> dict[str, Any]:
    """What the register stage last recorded (`registered` false, with the reason, when it did not)."""
    return json.loads(layout.registered.read_text()) if layout.registered.exists() else {}


def data_lines(layout: Layout) -> list[str]:
    """The data checks of this run's data version, as markdown: each suite, rejects, drift."""
    from mmops.data.drift import summarise  # scipy and sklearn: only when a report is written

    lines = ["", "## Data", ""]
    for name, path in (("raw manifest", layout.validation), ("cleaned manifest", layout.clean_expectations),
                       ("feature cache", layout.feature_expectations)):
        if path.exists():
            suite = json.loads(path.read_text())
            lines.append(f"- {name}: {'passed' if suite['success'] else 'FAILED'}"
                         + (f", {len(suite['warnings'])} row problem(s) left to clean" if suite["warnings"] else ""))
    if layout.clean_metrics.exists():
        clean = json.loads(layout.clean_metrics.read_text())
        lines.append(f"- clean kept {clean['kept']} of {clean['rows']} rows; rejects by reason: "
                     f"{clean['rejected_by_reason'] or 'none'}")
    # drift is a reason to retrain, reported here; the gate below judges the retrained model
    for name, path in (("labels and measures", layout.drift), ("features", layout.feature_drift)):
        if path.exists():
            lines.append(f"- drift of the {name} against the last training's data: "
                         f"{summarise(json.loads(path.read_text()))}")
    return lines


def report(layout: Layout, ran: Mapping[str, bool], gate: Mapping[str, Any] | None, *, remote: str | None,
           lock_changed: bool) -> str:
    """The run as markdown: what ran, the test scores, what was registered, the gate's decision."""
    lines = ["# Retraining", "", "| stage | |", "|---|---|"]
    lines += [f"| {name} | {'ran' if did else 'up to date (skipped)'} |" for name, did in ran.items()]
    if layout.metrics.exists():
        metrics = json.loads(layout.metrics.read_text())
        lines += ["", f"## Test scores ({metrics.get('test_samples', '?')} samples)", "",
                  "| model | accuracy | macro-F1 |", "|---|---|---|"]
        for model, scores in sorted(metrics["test"].items(), key=lambda item: item[0] != "fused"):
            lines.append(f"| {model} | {scores['accuracy']:.3f} | {scores['macro_f1']:.3f} |")
    lines += data_lines(layout)
    record = registration(layout)
    lines += ["", "## Registry", ""]
    if not ran.get("register"):
        lines.append("No new version: the pipeline's inputs had not changed since the last registration.")
    elif record.get("registered"):
        lines.append(f"Registered **{record['name']} v{record['version']}** as `{record['alias']}` "
                     f"(run `{record['run_id']}`, data md5 `{record['mmops.data_md5']}`).")
    else:
        lines.append(f"Not registered: {record.get('reason', 'no record')}")
    if gate is not None:
        lines += ["", f"## Gate: {gate['action']}", "",
                  f"Challenger v{gate['challenger']}, champion before: {gate['champion_before'] or 'none'}, "
                  f"after: {gate['champion_after'] or 'none'}.", ""]
        lines += [f"- {reason}" for reason in gate["checks"]]
    lines += ["", "## Workspace", "",
              f"- DVC remote: {remote or 'none configured (nothing pulled or pushed)'}",
              "- dvc.lock " + ("changed: commit it so others can `dvc pull` these outputs" if lock_changed
                               else "unchanged")]
    return "\n".join(lines) + "\n"
