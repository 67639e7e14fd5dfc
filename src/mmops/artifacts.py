"""Atomic writes: an artifact is either complete or absent, never half-written."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pandas as pd
import torch


def inside(root: Path, path: Path | str, what: str = "output folder") -> Path:
    """`path` (relative to `root`, or absolute) resolved, if it lies under `root`; a ValueError
    otherwise: what a caller from outside may write stays in the project."""
    root = Path(root).resolve()
    resolved = (root / path).resolve()
    if not resolved.is_relative_to(root):
        raise ValueError(f"{what} {path} refused: it must be under the project, {root}")
    return resolved


@contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """Yield a temporary path beside `path`; rename it onto `path` only if the block succeeds."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


@contextmanager
def atomic_dir(path: Path) -> Iterator[Path]:
    """Yield an empty temporary folder beside `path`; it replaces `path` (and whatever was there)
    only if the block succeeds."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
    try:
        yield tmp
        if path.exists():
            shutil.rmtree(path)
        os.replace(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _write(path: Path, writer: Callable[[Path], Any]) -> Path:
    with atomic_path(path) as tmp:
        writer(tmp)
    return Path(path)


def write_text(path: Path, text: str) -> Path:
    """Write UTF-8 text."""
    return _write(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))


def write_json(path: Path, obj: Any) -> Path:
    """Write `obj` as indented, key-sorted JSON."""
    return write_text(path, json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n")


def write_csv(path: Path, frame: pd.DataFrame) -> Path:
    """Write a frame as UTF-8 CSV without the index."""
    return _write(path, lambda tmp: frame.to_csv(tmp, index=False))


def save_torch(path: Path, obj: Any) -> Path:
    """`torch.save` a dict of tensors and plain values (loadable with `weights_only=True`).
    The same content gives the same bytes, so DVC sees an unchanged output as unchanged."""

    def save(tmp: Path) -> None:
        # Saved through a file object: given a path, torch names the archive inside after the
        # (random) temporary file name, and the bytes would differ on every run.
        with tmp.open("wb") as fh:
            torch.save(obj, fh)

    return _write(path, save)


def load_torch(path: Path) -> Any:
    """Load what `save_torch` wrote, never unpickling arbitrary objects."""
    return torch.load(path, map_location="cpu", weights_only=True)


def read_csv(path: Path) -> pd.DataFrame:
    """A CSV a stage wrote, every value a string (empty stays empty, never NaN)."""
    return pd.read_csv(path, dtype=str, keep_default_na=False)
