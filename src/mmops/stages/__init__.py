"""One function per pipeline stage: params and the artifact layout in, files out.

This is the single place each step is implemented: `dvc.yaml` reaches these through the CLI
(`mmops stage <name>`), `flows/` through Prefect tasks, and tests call them directly. They live
by lifecycle in `data.py` (validate, clean, split, augment), `model.py` (featurize, train, evaluate, shift) and
`release.py` (register, promote, rollback). `stages.<name>` finds each one, importing only its
module, so a stage depends (in dvc.yaml) on its own module and not on the others.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

STAGES = ("validate", "clean", "split", "augment", "featurize", "train", "evaluate", "shift", "register")
MODULE_OF = {
    "validate": "data", "clean": "data", "split": "data", "augment": "data",
    "featurize": "model", "train": "model", "evaluate": "model", "shift": "model",
    "register": "release", "promote": "release", "rollback": "release", "dvc_file_of": "release",
}


def __getattr__(name: str) -> Any:
    if name not in MODULE_OF:
        raise AttributeError(f"module 'mmops.stages' has no attribute {name!r}")
    return getattr(import_module(f"mmops.stages.{MODULE_OF[name]}"), name)


def __dir__() -> list[str]:
    return sorted([*globals(), *MODULE_OF])
