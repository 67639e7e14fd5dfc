"""Cleaning: keep the rows every later stage can use, and record each dropped row with its reason."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
from PIL import Image, UnidentifiedImageError

from mmops.config import CleanParams
from mmops.data.manifest import LINE, resolve_media

REJECT_COLUMNS = (LINE, "sample_id", "image", "reason")


def image_problem(path: Path, max_pixels: int) -> str | None:
    """Why the image at `path` cannot be used, or None when it decodes fully.
    Every reason reads `<kind>` or `<kind>: <detail>`; the kind is what metrics count."""
    if not path.is_file():
        return "image file not found"
    try:
        with Image.open(path) as img:
            width, height = img.size  # header only: a bomb is refused before it is decoded
            if width * height > max_pixels:
                return f"decompression bomb: {width}x{height} pixels exceeds {max_pixels}"
            img.load()
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, Image.DecompressionBombError) as err:
        return f"unreadable image: {err}"
    return None


def row_problem(row: pd.Series, root: Path, labels: frozenset[str], max_pixels: int) -> str | None:
    """The first reason this row cannot be used, or None."""
    if not str(row["sample_id"]).strip():
        return "empty sample_id"
    if row["label"] not in labels:
        return f"unknown label: {row['label']!r}"
    if not str(row["text"]).strip():
        return "empty text"
    try:
        path = resolve_media(root, row["image"])
    except ValueError as err:
        return f"bad image path: {err}"
    return image_problem(path, max_pixels)


def clean_manifest(
    frame: pd.DataFrame, root: Path, labels: tuple[str, ...], params: CleanParams
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Split `frame` into (kept rows, rejects with a reason each). The first row of a duplicated
    sample_id is kept; later ones are rejected. Text is stripped of surrounding whitespace.
    `frame` itself is not modified."""
    allowed = frozenset(labels)
    first_line: dict[str, int] = {}
    reasons: list[str | None] = []
    for _, row in frame.iterrows():
        reason = row_problem(row, root, allowed, params.max_image_pixels)
        if reason is None:
            if row["sample_id"] in first_line:
                reason = f"duplicate sample_id: first on line {first_line[row['sample_id']]}"
            else:
                first_line[row["sample_id"]] = int(row[LINE])
        reasons.append(reason)
    reason_series = pd.Series(reasons, index=frame.index, dtype=object)
    bad = reason_series.notna()
    kept = frame.loc[~bad].assign(text=lambda f: f["text"].str.strip()).reset_index(drop=True)
    rejects = frame.loc[bad].assign(reason=reason_series[bad])[list(REJECT_COLUMNS)].reset_index(drop=True)
    return kept, rejects
