"""Grouped cross-validation folds, for comparing models on more rows than one test split holds.

A test split of a few hundred rows cannot tell two fusion methods apart when they differ by a
point or two; scoring every train and val row once, each by a model that never saw its group,
can. The folds keep the split's groups whole (a near-duplicate or a family member is never on
both sides) and stratify by label; inside each, a grouped slice of the rest is the validation
set that model selection and calibration use. The benches compare methods this way; the test
split stays for reporting.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import torch
from sklearn.model_selection import StratifiedGroupKFold


@dataclass(frozen=True)
class Fold:
    """Row positions: what the model trains on, what selects and calibrates it, what it scores."""

    train: np.ndarray
    val: np.ndarray
    test: np.ndarray


def grouped_folds(target: np.ndarray, groups: np.ndarray, folds: int, *, seed: int = 0,
                  val_folds: int = 6) -> list[Fold]:
    """`folds` folds over the rows: each row is in exactly one fold's `test`; a group never
    straddles train, val and test; labels are spread as evenly as the groups allow. Each fold's
    val is one of `val_folds` grouped, stratified slices of its remaining rows."""
    target, groups = np.asarray(target), np.asarray(groups)
    if len(target) != len(groups):
        raise ValueError(f"{len(groups)} group labels for {len(target)} rows")
    out = []
    outer = StratifiedGroupKFold(n_splits=folds, shuffle=True, random_state=seed)
    for rest, test in outer.split(np.zeros(len(target)), target, groups):
        inner = StratifiedGroupKFold(n_splits=val_folds, shuffle=True, random_state=seed)
        train, val = next(inner.split(np.zeros(len(rest)), target[rest], groups[rest]))
        out.append(Fold(train=rest[train], val=rest[val], test=test))
    return out


def pool(data: dict[str, dict[str, Any]], frame: pd.DataFrame,
         splits: Sequence[str]) -> tuple[dict[str, Any], pd.DataFrame]:
    """The `splits` of `features_by_split`'s output (features and presence per modality, target)
    concatenated in order, the rows to fold; and the split manifest's rows in that same order
    (their ids and groups)."""
    parts = [data[s] for s in splits]
    pooled = {"features": {m: torch.cat([p["features"][m] for p in parts]) for m in parts[0]["features"]},
              "present": {m: torch.cat([p["present"][m] for p in parts]) for m in parts[0]["present"]},
              "target": torch.cat([p["target"] for p in parts])}
    rows = pd.concat([frame[frame["split"] == s] for s in splits], ignore_index=True)
    return pooled, rows


def take(part: dict[str, Any], rows: np.ndarray) -> dict[str, Any]:
    """The `rows` (positions) of a pooled or single split."""
    index = torch.as_tensor(rows)
    return {"features": {m: t[index] for m, t in part["features"].items()},
            "present": {m: p[index] for m, p in part["present"].items()}, "target": part["target"][index]}
