"""The manifest: reading it with errors that name the file and line."""

from __future__ import annotations

import csv
import sys
from collections.abc import Iterable
from pathlib import Path

import pandas as pd

# the canonical column names (ID, LABEL, LINE) live in config, so every layer can name them
from mmops.config import ID, LABEL, LINE, DataParams, ModalityParams  # noqa: F401


class ManifestError(ValueError):
    """The manifest as a whole cannot be used (unreadable, malformed, missing columns)."""


def source_names(data: DataParams, modalities: Iterable[ModalityParams]) -> dict[str, str]:
    """Canonical column name -> the name the manifest uses, for every required column."""
    return {ID: data.columns.id, **{m.name: m.column for m in modalities}, LABEL: data.columns.label}


def read_manifest(path: Path, names: dict[str, str]) -> pd.DataFrame:
    """Read the manifest as strings, with columns renamed to the canonical names and a `line`
    column. Raises `ManifestError` naming the file (and line) when it cannot be parsed.
    Missing columns are left for validation to report."""
    path = Path(path)
    if not path.is_file():
        raise ManifestError(f"{path}: manifest not found")
    try:
        # utf-8-sig: a byte-order mark (spreadsheet exports) is dropped, not glued to the first column name
        frame = pd.read_csv(path, dtype=str, keep_default_na=False, encoding="utf-8-sig")
    except UnicodeDecodeError as err:
        raise ManifestError(f"{path}: {_first_bad_byte(path.read_bytes())}") from err
    except (pd.errors.ParserError, pd.errors.EmptyDataError) as err:
        raise ManifestError(f"{path}: malformed CSV: {err}") from err
    frame = frame.rename(columns={source: key for key, source in names.items()})
    lines = record_lines(path)
    # Should the two parsers ever disagree, number records plainly rather than wrongly.
    frame[LINE] = lines if len(lines) == len(frame) else range(2, len(frame) + 2)
    return frame


def _first_bad_byte(data: bytes) -> str:
    """Where a file stops being UTF-8 (pandas reports an offset within its read chunk)."""
    try:
        data.decode("utf-8")
    except UnicodeDecodeError as err:
        line = data[:err.start].count(b"\n") + 1
        return f"line {line}: not UTF-8 text (byte {err.start}): {err.reason}"
    return "not UTF-8 text"


def record_lines(path: Path) -> list[int]:
    """The line each data record starts on, as an editor numbers them: blank lines are skipped
    and a quoted field may span lines (as pandas parses them)."""
    starts: list[int] = []
    # the csv module refuses fields over 128 KiB by default; pandas has already read them, and a
    # long cell is for the row's checks to reject, not a reason to lose track of lines
    limit = csv.field_size_limit(sys.maxsize)
    try:
        with Path(path).open(newline="", encoding="utf-8-sig") as fh:
            reader = csv.reader(fh)
            next(reader, None)  # header
            previous = reader.line_num
            for record in reader:
                if record:
                    starts.append(previous + 1)
                previous = reader.line_num
    finally:
        csv.field_size_limit(limit)
    return starts


def classes_without_rows(frame: pd.DataFrame, labels: Iterable[str]) -> list[str]:
    """The configured `labels` that no row of `frame` carries, in their configured order."""
    present = set(frame[LABEL])
    return [label for label in labels if label not in present]


def missing_columns(frame: pd.DataFrame, names: dict[str, str]) -> list[str]:
    """Required columns absent from the manifest, by the names the manifest should use."""
    return [source for key, source in names.items() if key not in frame.columns]


def require_columns(frame: pd.DataFrame, path: Path, names: dict[str, str]) -> None:
    """Raise `ManifestError` naming every required column the manifest lacks."""
    missing = missing_columns(frame, names)
    if missing:
        raise ManifestError(f"{path}: missing column(s): {', '.join(missing)}")
