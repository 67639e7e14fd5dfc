"""Cleaning: keep the rows every later stage can use, and record each dropped row with its reason."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from mmops.config import Params
from mmops.data.manifest import ID, LABEL, LINE, read_manifest, require_columns, source_names
from mmops.modalities import build_modalities
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


def shared_files(hashes: pd.Series) -> dict[str, int]:
    """How many media files more than one kept row uses (kept: other text, same label), and those
    rows: the groups the split never cuts apart."""
    sizes = hashes[hashes != ""].value_counts()
    shared = sizes[sizes > 1]
    return {"files": int(len(shared)), "rows": int(shared.sum())}


def reject_kinds(rejects: pd.DataFrame) -> pd.Series:
    """Each reject's kind: its reason up to the first colon (`row_problem`'s `<kind>`)."""
    return rejects["reason"].str.split(":").str[0]


def rejects_by_reason(rejects: pd.DataFrame) -> dict[str, int]:
    """How many rows were rejected for each kind of reason, most frequent first: what metrics report."""
    return {str(kind): int(count) for kind, count in reject_kinds(rejects).value_counts().items()}


def over_budget(rejects: pd.DataFrame, rows: int, max_fraction: float, *, shown: int = 3) -> str | None:
    """Why the rejects are too many to go on (more than `max_fraction` of `rows`), naming the most
    frequent reasons with the first lines of each; None within budget."""
    if not rows or len(rejects) / rows <= max_fraction:
        return None
    kinds = reject_kinds(rejects)
    parts = []
    for kind, count in kinds.value_counts().head(shown).items():
        lines = ", ".join(str(line) for line in rejects.loc[kinds == kind, LINE].head(shown))
        parts.append(f"'{kind}' x{count} (line {lines}{', ...' if count > shown else ''})")
    return (f"{len(rejects)} of {rows} rows rejected ({len(rejects) / rows:.1%}), more than "
            f"clean.max_reject_fraction ({max_fraction:.1%}); most frequent: {'; '.join(parts)}")


def content_problems(ids: Sequence[str], labels: Sequence[str], content: dict[str, Sequence[str]],
                     media: Sequence[str]) -> dict[int, str]:
    """Reasons, by position, for rows whose content repeats. `content` holds, per modality, each
    row's normalised value or (for a media modality, named in `media`) its file's hash. The same
    media file under different labels is ambiguous: every such row is rejected, the others named.
    The same content in every modality under another id is a duplicate of the first such row."""
    reasons: dict[int, str] = {}
    for column in media:
        by_file: dict[str, list[int]] = {}
        for position, key in enumerate(content[column]):
            if key:
                by_file.setdefault(key, []).append(position)
        for rows in by_file.values():
            if len({labels[r] for r in rows}) > 1:
                listed = ", ".join(f"{ids[r]} ({labels[r]})" for r in rows)
                for r in rows:
                    reasons[r] = f"ambiguous label: the same file is labelled differently in {listed}"
    first: dict[tuple[str, ...], int] = {}
    for position, key in enumerate(zip(*content.values())):
        if position in reasons:
            continue
        if key in first:
            reasons[position] = f"duplicate content: the same as {ids[first[key]]}"
        else:
            first[key] = position
    return reasons


def clean_manifest(
    frame: pd.DataFrame, root: Path, labels: tuple[str, ...], modalities: Sequence[Modality]
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Split `frame` into (kept rows, rejects with a reason each). The first row of a duplicated
    sample_id is kept, later ones are rejected; so are rows whose content repeats
    (`content_problems`). Kept values are normalised by their modality, and each media file's
    sha256 is added (what the split groups duplicates by), and each modality's `facts` as columns. An optional modality may be empty
    (kept as ""); a row with every modality empty is rejected. `frame` itself is not modified."""
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
    usable = frame.loc[reason_series.isna()]
    values = {m.name: ["" if m.may_skip(v) else m.normalise(v) for v in usable[m.name]] for m in modalities}
    hashes = {hash_column(m.name): ["" if m.may_skip(v) else m.content_key(v, root) for v in usable[m.name]]
              for m in modalities if m.media}
    facts: dict[str, list[Any]] = {f"{m.name}_{fact}": [None] * len(usable) for m in modalities for fact in m.fact_names}
    for m in modalities:
        for position, value in enumerate(usable[m.name]):
            for fact, measured in ({} if m.may_skip(value) else m.facts(value, root)).items():
                facts[f"{m.name}_{fact}"][position] = measured
    content = {m.name: hashes[hash_column(m.name)] if m.media else values[m.name] for m in modalities}
    repeated = content_problems(list(usable[ID]), list(usable[LABEL]), content,
                                [m.name for m in modalities if m.media])
    for position, reason in repeated.items():
        reason_series[usable.index[position]] = reason
    keep = [position not in repeated for position in range(len(usable))]
    kept = usable.assign(**values, **hashes, **facts).loc[keep].reset_index(drop=True)
    bad = reason_series.notna()
    shown = [LINE, ID] + [m.name for m in modalities if m.media] + ["reason"]
    rejects = frame.loc[bad].assign(reason=reason_series[bad])[shown].reset_index(drop=True)
    return kept, rejects


def read_rows(params: Params, manifest: Path, root: Path | None = None,
              labels: Sequence[str] | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The usable rows of `manifest` (media under `root`, by default the manifest's folder), by
    cleaning's rules, and the rejected rows with their reasons. Any label is kept unless
    `labels` are given (for drift, a new or vanished class is to report, not a row to drop; to
    score a model, a class it does not know is a reject)."""
    manifest = Path(manifest)
    root = Path(root) if root is not None else manifest.parent
    names = source_names(params.data, params.modalities)
    frame = read_manifest(manifest, names)
    require_columns(frame, manifest, names)
    known = tuple(sorted(set(frame[LABEL]))) if labels is None else tuple(labels)
    return clean_manifest(frame, root, known, build_modalities(params.modalities))
