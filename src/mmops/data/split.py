"""Deterministic, stable splits: a sample's split is a function of its image's content hash
alone, so adding data never moves old samples and identical images never straddle splits."""

from __future__ import annotations

import hashlib

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


def assign_splits(frame: pd.DataFrame, params: SplitParams) -> pd.DataFrame:
    """A copy of `frame` (as written by clean) with a `split` column."""
    if not 0 <= params.val_fraction + params.test_fraction < 1:
        raise ValueError("split: val_fraction + test_fraction must be in [0, 1)")
    return frame.assign(split=[split_of(str(key), params) for key in frame["content_hash"]])
