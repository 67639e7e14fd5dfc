"""Deterministic, stable splits: a sample's split is a function of its group's key alone, and a
group never straddles splits. Adding data never moves old samples, except where a new sample
links two old groups: the merged group then moves as one (split/groups.csv lists the groups).

A group is every row linked to another by: the same media file (content hash), a near-duplicate
image (perceptual hashes within `split.near_duplicate_distance` bits: a recolour, a re-encode),
or the same family (the name with person and gender words removed: `cook`, `man cook` and
`woman cook`). Its key is the smallest content hash in it, so a row that links to nothing keeps
the split it had before near-duplicates and families were grouped; only merged groups move.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Sequence

import numpy as np

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


def group_keys(frame: pd.DataFrame, key_columns: Sequence[str], fallback: str,
               links: Iterable[tuple[int, int]] = ()) -> list[str]:
    """One key per row: rows that share a value in any of `key_columns` (a media file's hash),
    or that `links` joins (pairs of row positions), are one group, keyed by the smallest value
    in it. Empty values (an optional modality that a row lacks) link nothing; a row with no
    value at all is keyed by `fallback` (its id)."""
    parent: dict[str, str] = {}

    def find(x: str) -> str:
        while parent.setdefault(x, x) != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    def union(x: str, y: str) -> None:
        a, b = find(x), find(y)
        parent[max(a, b)] = min(a, b)  # the smallest key represents the group

    rows = [[str(v) for v in values if isinstance(v, str) and v] for values in
            frame[list(key_columns)].itertuples(index=False)] if key_columns else [[] for _ in range(len(frame))]
    # ids and hashes live in one namespace here; the prefix keeps them from ever meeting
    rows = [values or [f"id:{sample_id}"] for values, sample_id in zip(rows, frame[fallback])]
    for values in rows:
        for other in values[1:]:
            union(values[0], other)
    for i, j in links:
        union(rows[i][0], rows[j][0])
    return [find(values[0]) for values in rows]


def near_duplicate_links(hashes: Sequence[str], max_distance: int, chunk: int = 512) -> list[tuple[int, int]]:
    """Pairs of positions (i < j) whose perceptual hashes (hex strings, equal length; empty:
    none) differ in at most `max_distance` bits. All pairs are compared, a chunk of rows at a
    time: about a second for 2,000 rows; a million rows would want an index (e.g. a BK-tree)."""
    present = [i for i, h in enumerate(hashes) if h]
    if len(present) < 2 or max_distance < 0:
        return []
    bits = np.array([np.frombuffer(bytes.fromhex(hashes[i]), dtype=np.uint8) for i in present])
    pairs: list[tuple[int, int]] = []
    for start in range(0, len(present), chunk):
        block = bits[start:start + chunk]
        distance = np.bitwise_count(block[:, None, :] ^ bits[None, :, :]).sum(axis=2)
        for a, b in zip(*np.nonzero(distance <= max_distance)):
            i, j = present[start + a], present[b]
            if i < j:
                pairs.append((i, j))
    return pairs


def family_key(text: str, drop_words: Sequence[str], separator: str) -> str:
    """The concept a text names, without who: its name (up to `separator`), lower-cased, in
    words, the `drop_words` (man, woman, person, ...) removed. `man cook; male-cook` -> `cook`."""
    name = text.split(separator, 1)[0] if separator else text
    dropped = set(drop_words)
    return " ".join(w for w in re.findall(r"[^\W_]+", name.lower()) if w not in dropped)


def family_links(keys: Sequence[str]) -> list[tuple[int, int]]:
    """Pairs joining every row to the first row of its family (the same non-empty key)."""
    first: dict[str, int] = {}
    pairs = []
    for position, key in enumerate(keys):
        if key:
            pairs.append((first.setdefault(key, position), position))
    return [(i, j) for i, j in pairs if i != j]


def assign_splits(frame: pd.DataFrame, params: SplitParams, key_columns: Sequence[str],
                  fallback: str = "sample_id", links: Iterable[tuple[int, int]] = ()) -> pd.DataFrame:
    """A copy of `frame` (as written by clean) with a `split` column, by group."""
    if not 0 <= params.val_fraction + params.test_fraction < 1:
        raise ValueError("split: val_fraction + test_fraction must be in [0, 1)")
    keys = group_keys(frame, key_columns, fallback, links)
    return frame.assign(group=keys, split=[split_of(key, params) for key in keys])


def _across(frame: pd.DataFrame, pairs: Sequence[tuple[int, int]]) -> int:
    split = frame["split"].to_numpy()
    return sum(1 for i, j in pairs if split[i] != split[j])


def _test_rows_with_train_sibling(frame: pd.DataFrame) -> int:
    in_train = set(frame.loc[(frame["split"] == "train") & (frame["family"] != ""), "family"])
    return int(((frame["split"] == "test") & frame["family"].isin(in_train)).sum())


def group_table(grouped: pd.DataFrame, key_columns: Sequence[str], near: Sequence[tuple[int, int]],
                name_column: str = "", separator: str = "") -> pd.DataFrame:
    """Every group of several rows, largest first: its split, size, what links it (the same
    file, a near-duplicate, a family) and its members (ids, and names from `name_column`)."""
    why: dict[str, set[str]] = {}
    groups = grouped["group"].to_numpy()
    for column in key_columns:
        shared = grouped[grouped[column] != ""].groupby(column)["group"]
        for group in shared.first()[shared.size() > 1]:
            why.setdefault(group, set()).add("same file")
    files = grouped[list(key_columns)].to_numpy()
    for i, j in near:
        if not any(a == b != "" for a, b in zip(files[i], files[j])):  # identical files are "same file"
            why.setdefault(groups[i], set()).add("near-duplicate")
    family = grouped[grouped["family"] != ""].groupby("family")["group"]
    for group in family.first()[family.size() > 1]:
        why.setdefault(group, set()).add("family")
    rows = []
    for group, members in grouped.groupby("group", sort=False):
        if len(members) > 1:
            names = members[name_column] if name_column else members["sample_id"]
            if name_column and separator:
                names = names.str.split(separator).str[0]
            rows.append({"group": group, "split": members["split"].iloc[0], "rows": len(members),
                         "linked_by": ", ".join(sorted(why.get(group, set()))),
                         "sample_ids": " ".join(members["sample_id"]), "names": " | ".join(names)})
    table = pd.DataFrame(rows, columns=["group", "split", "rows", "linked_by", "sample_ids", "names"])
    return table.sort_values(["rows", "group"], ascending=[False, True], ignore_index=True)


def split_report(files_only: pd.DataFrame, grouped: pd.DataFrame,
                 near: Sequence[tuple[int, int]]) -> dict[str, object]:
    """What grouping near-duplicates and families changed, against grouping identical files
    only (`files_only`, the same rows): rows moved, groups merged, and the leaks it closed:
    test rows with a train row of their family, near-duplicate pairs across splits."""
    sizes = grouped["group"].value_counts()
    families = grouped.loc[grouped["family"] != "", "family"].value_counts()
    before = files_only.assign(family=grouped["family"].to_numpy())
    merged = grouped.assign(before=files_only["group"].to_numpy()).groupby("group")["before"].nunique()
    return {
        "rows": {name: int((grouped["split"] == name).sum()) for name in SPLITS},
        "groups": {"groups": int(len(sizes)), "with_several_rows": int((sizes > 1).sum()),
                   "largest": int(sizes.max()) if len(sizes) else 0,
                   "near_duplicate_pairs": len(near), "families_with_several_rows": int((families > 1).sum())},
        "versus_identical_files_only": {
            "groups_merged": int((merged > 1).sum()),
            "rows_moved": int((files_only["split"].to_numpy() != grouped["split"].to_numpy()).sum()),
            "test_rows_with_a_train_sibling": {"before": _test_rows_with_train_sibling(before),
                                               "after": _test_rows_with_train_sibling(grouped)},
            "near_duplicate_pairs_across_splits": {"before": _across(files_only, near),
                                                   "after": _across(grouped, near)},
        },
    }
