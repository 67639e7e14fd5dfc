"""The pipeline's rows and their cached features, by split (the split manifest aligned with the
feature cache): what training, evaluation and the bench scripts read once featurize has run."""

from __future__ import annotations

from typing import Any

import pandas as pd
import torch

from mmops import artifacts
from mmops.config import Layout, Params
from mmops.data.manifest import ID, LABEL
from mmops.data.split import SPLITS
from mmops.features.cache import FeatureCache


def augmented_views(layout: Layout) -> pd.DataFrame:
    """The augment stage's manifest of views; none where that stage has not run (featurize run
    by hand right after clean): `dvc repro` always runs it first."""
    from mmops.data.augment import MANIFEST

    path = layout.augment / MANIFEST
    return artifacts.read_csv(path) if path.exists() else pd.DataFrame(columns=[ID, LABEL, "split"])


def features_by_split(params: Params, layout: Layout, views: bool = False,
                      ) -> tuple[FeatureCache, dict[str, dict[str, Any]], pd.DataFrame]:
    """The cache, and per split its features, presence masks and label indices, aligned with
    the split manifest's rows (returned). With `views`, the train split also has the augment
    stage's views of its samples (after them)."""
    frame = artifacts.read_csv(layout.split_manifest)
    rows = pd.concat([frame, augmented_views(layout)], ignore_index=True) if views else frame
    cache = FeatureCache.load(layout.features)
    features, present = cache.align(list(rows[ID]), str(layout.features))
    classes = list(params.data.labels)
    labels = torch.tensor([classes.index(label) for label in rows[LABEL]])
    by_split = {}
    for name in SPLITS:
        mask = torch.tensor((rows["split"] == name).to_numpy(), dtype=torch.bool)
        if not mask.any():
            raise ValueError(f"{layout.split_manifest}: the '{name}' split is empty; add data or change 'split' params")
        by_split[name] = {"features": {m: t[mask] for m, t in features.items()},
                          "present": {m: p[mask] for m, p in present.items()}, "target": labels[mask]}
    return cache, by_split, frame
