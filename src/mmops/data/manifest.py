"""The manifest: reading it with errors that name the file and line, and resolving media paths."""

from __future__ import annotations

import csv
from pathlib import Path

import pandas as pd

from mmops.config import Columns

# Canonical column names used by every stage after reading; `line` is the manifest's line
# number (the header is line 1), so messages can point at the row a person would open.
CANONICAL = ("sample_id", "image", "text", "label")
LINE = "line"


class ManifestError(ValueError):
    """The manifest as a whole cannot be used (unreadable, malformed, missing columns)."""


def source_names(columns: Columns) -> dict[str, str]:
    """Canonical column name -> the name the manifest uses."""
    return {"sample_id": columns.id, "image": columns.image, "text": columns.text, "label": columns.label}


def read_manifest(path: Path, columns: Columns) -> pd.DataFrame:
    """Read the manifest as strings, with columns renamed to the canonical names and a `line`
    column. Raises `ManifestError` naming the file (and line) when it cannot be parsed.
    Missing columns are left for validation to report."""
    path = Path(path)
    if not path.is_file():
        raise ManifestError(f"{path}: manifest not found")
    try:
        frame = pd.read_csv(path, dtype=str, keep_default_na=False, encoding="utf-8")
    except UnicodeDecodeError as err:
        raise ManifestError(f"{path}: not UTF-8 text (byte {err.start}): {err.reason}") from err
    except (pd.errors.ParserError, pd.errors.EmptyDataError) as err:
        raise ManifestError(f"{path}: malformed CSV: {err}") from err
    frame = frame.rename(columns={source: key for key, source in source_names(columns).items()})
    lines = record_lines(path)
    # Should the two parsers ever disagree, number records plainly rather than wrongly.
    frame[LINE] = lines if len(lines) == len(frame) else range(2, len(frame) + 2)
    return frame


def record_lines(path: Path) -> list[int]:
    """The line each data record starts on, as an editor numbers them: blank lines are skipped
    and a quoted field may span lines (as pandas parses them)."""
    starts: list[int] = []
    with Path(path).open(newline="", encoding="utf-8") as fh:
        reader = csv.reader(fh)
        next(reader, None)  # header
        previous = reader.line_num
        for record in reader:
            if record:
                starts.append(previous + 1)
            previous = reader.line_num
    return starts


def missing_columns(frame: pd.DataFrame, columns: Columns) -> list[str]:
    """Required columns absent from the manifest, by the names the manifest should use."""
    return [source for key, source in source_names(columns).items() if key not in frame.columns]


def require_columns(frame: pd.DataFrame, path: Path, columns: Columns) -> None:
    """Raise `ManifestError` naming every required column the manifest lacks."""
    missing = missing_columns(frame, columns)
    if missing:
        raise ManifestError(f"{path}: missing column(s): {', '.join(missing)}")


def resolve_media(root: Path, relative: str) -> Path:
    """The file a manifest path points to, which must stay inside `root`.
    Raises `ValueError` for empty paths and paths that escape it (`../`, absolute, symlinks out)."""
    if not relative or not relative.strip():
        raise ValueError("empty path")
    candidate = Path(relative)
    if candidate.is_absolute():
        raise ValueError(f"absolute path {relative!r} is outside {root}/")
    root_resolved = Path(root).resolve()
    resolved = (root_resolved / candidate).resolve()
    if not resolved.is_relative_to(root_resolved):
        raise ValueError(f"path {relative!r} escapes {root}/")
    return resolved
