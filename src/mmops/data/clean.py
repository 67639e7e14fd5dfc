"""Cleaning: keep the rows every later stage can use, and record each dropped row with its reason."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from mmops.data.manifest import ID, LABEL, LINE
from mmops.modalities.base import Modality


def hash_column(modality: str) -> str:
    """The cleaned manifest's column holding the sha256 of a media modality's file."""
    return f"{modality}_sha256"


def row_problem(row: pd.Series, root: Path, labels: frozenset[str], modalities: Sequence[Modality]) -> str | None:
    """The first reason this row cannot be used, or None. Every reason reads `<kind>` or
    `<kind>: <detail>`; the kind is what the metrics count."""
    if not str(row[ID]).strip():
        return "empty sample_id"
    if row[LABEL] not in labels:
        return f"unknown label: {row[LABEL]!r}"
    for modality in modalities:
        if modality.may_skip(row[modality.name]):
            continue
        reason = modality.problem(row[modality.name], root)
        if reason is not None:
            return reason
    if all(modality.may_skip(row[modality.name]) for modality in modalities):
        return "no modality: every one is empty"
    return None


def clean_manifest(
    frame: pd.DataFrame, root: Path, labels: tuple[str, ...], modalities: Sequence[Modality]
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Split `frame` into (kept rows, rejects with a reason each). The first row of a duplicated
    sample_id is kept; later ones are rejected. Kept values are normalised by their modality,
    and each media file's sha256 is added (what the split groups duplicates by). An optional
    modality may be empty (kept as ""); a row with every modality empty is rejected.
    `frame` itself is not modified."""
    allowed = frozenset(labels)
    first_line: dict[str, int] = {}
    reasons: list[str | None] = []
    for _, row in frame.iterrows():
        reason = row_problem(row, root, allowed, modalities)
        if reason is None:
            if row[ID] in first_line:
                reason = f"duplicate sample_id: first on line {first_line[row[ID]]}"
            else:
                first_line[row[ID]] = int(row[LINE])
        reasons.append(reason)
    reason_series = pd.Series(reasons, index=frame.index, dtype=object)
    bad = reason_series.notna()
    kept = frame.loc[~bad].reset_index(drop=True)
    kept = kept.assign(**{m.name: ["" if m.may_skip(v) else m.normalise(v) for v in kept[m.name]]
                          for m in modalities})
    kept = kept.assign(**{
        hash_column(m.name): ["" if m.may_skip(v) else m.content_key(v, root) for v in kept[m.name]]
        for m in modalities if m.media
    })
    shown = [LINE, ID] + [m.name for m in modalities if m.media] + ["reason"]
    rejects = frame.loc[bad].assign(reason=reason_series[bad])[shown].reset_index(drop=True)
    return kept, rejects
