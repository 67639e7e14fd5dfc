"""Where a flow works: its project checkout, whatever directory it was started from (a
deployment's worker, a shell elsewhere), because params.yaml's paths, the artifacts and MLflow's
default store are all relative to the project. What every flow in flows/ shares."""

from __future__ import annotations

import argparse
import contextlib
from collections.abc import Iterator
from pathlib import Path


def checkout_of(flow_file: str) -> Path:
    """The project checkout holding `flow_file` (a flows/<name>.py)."""
    return Path(flow_file).resolve().parents[1]


@contextlib.contextmanager
def working_in(project_dir: str | None, flow_file: str) -> Iterator[Path]:
    """Work in `project_dir` (default: the checkout holding `flow_file`) for the block, then go
    back; yields that directory, absolute."""
    root = Path(project_dir).resolve() if project_dir else checkout_of(flow_file)
    with contextlib.chdir(root):
        yield root


def flow_parser(description: str | None, *, params: bool = True, artifacts: bool = False) -> argparse.ArgumentParser:
    """A flow's command line: `--project`, and `--params` / `--artifacts` (relative to it) when
    the flow takes them."""
    parser = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--project", default=None, help="the project checkout (default: the one holding this file)")
    if params:
        parser.add_argument("--params", default="params.yaml", help="relative to the project")
    if artifacts:
        parser.add_argument("--artifacts", default="artifacts", help="relative to the project")
    return parser
