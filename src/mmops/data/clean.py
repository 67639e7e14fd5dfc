"""Cleaning: keep the rows every later stage can use, and record each dropped row with its reason."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from mmops.config import CleanParams
from mmops.data.manifest import LINE, resolve_media
from mmops.data.media import MediaError, content_hash, load_image

REJECT_COLUMNS = (LINE, "sample_id", "image", "reason")


def image_problem(path: Path, max_pixels: int) -> str | None:
    """Why the image at `path` cannot be used, or None when it decodes fully."""
    if not path.is_file():
        return "image file not found"
    try:
        load_image(path, max_pixels)
    except MediaError as err:
        return str(err)
    return None


def row_problem(row: pd.Series, root: Path, labels: frozenset[str], max_pixels: int) -> str | None:
    """The first reason this row cannot be used, or None. Every reason reads `<kind>` or
    `<kind>: <detail>`; the kind is what the metrics count."""
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
    sample_id is kept; later ones are rejected. Text is stripped of surrounding whitespace, and
    kept rows get the `content_hash` of their image (what the split groups by).
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
    kept = frame.loc[~bad].reset_index(drop=True)
    kept = kept.assign(
        text=kept["text"].str.strip(),
        content_hash=[content_hash(resolve_media(root, p)) for p in kept["image"]],
    )
    rejects = frame.loc[bad].assign(reason=reason_series[bad])[list(REJECT_COLUMNS)].reset_index(drop=True)
    return kept, rejects
