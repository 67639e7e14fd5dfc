"""Deterministic, stable splits: a sample's split is a function of its group's key alone, so
adding data never moves old samples and identical media never straddle splits."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import pandas as pd

from mmops.config import SplitParams

SPLITS = ("train", "val", "test")


def split_of(key: str, params: SplitParams) -> str:
    """The split for a group key (a content hash), from a salted hash of it: adding or removing
    other samples never moves it."""
    digest = hashlib.sha256(f"{params.salt}:{key}".encode()).digest()
    position = int.from_bytes(digest[:8], "big") / 2**64  # uniform in [0, 1)
    if position < params.test_fraction:
        return "test"
    if position < params.test_fraction + params.val_fraction:
        return "val"
    return "train"


def group_keys(frame: pd.DataFrame, key_columns: Sequence[str], fallback: str) -> list[str]:
    """One key per row: rows that share a value in any of `key_columns` (a media file's hash)
    are one group, keyed by the smallest value in it. Empty values (an optional modality that a
    row lacks) link nothing; a row with no value at all is keyed by `fallback` (its id)."""
    parent: dict[str, str] = {}

    def find(x: str) -> str:
        while parent.setdefault(x, x) != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    rows = [[str(v) for v in values if isinstance(v, str) and v] for values in
            frame[list(key_columns)].itertuples(index=False)] if key_columns else [[] for _ in range(len(frame))]
    # ids and hashes live in one namespace here; the prefix keeps them from ever meeting
    rows = [values or [f"id:{sample_id}"] for values, sample_id in zip(rows, frame[fallback])]
    for values in rows:
        for other in values[1:]:
            a, b = find(values[0]), find(other)
            parent[max(a, b)] = min(a, b)  # the smallest key represents the group
    return [find(values[0]) for values in rows]


def assign_splits(frame: pd.DataFrame, params: SplitParams, key_columns: Sequence[str],
                  fallback: str = "sample_id") -> pd.DataFrame:
    """A copy of `frame` (as written by clean) with a `split` column, by group."""
    if not 0 <= params.val_fraction + params.test_fraction < 1:
        raise ValueError("split: val_fraction + test_fraction must be in [0, 1)")
    return frame.assign(split=[split_of(key, params) for key in group_keys(frame, key_columns, fallback)])
