"""The reference profile of a training set: what the drift check (`mmops.data.drift`) compares
later data with. At the end of training, `build_profile` summarises the train split in a small
JSON document: what identifies its rows (each sample id and a hash of its content), the label
counts, each modality's per-row measures (a text's length; an image's width, height and
brightness) and the distribution of every modality's features, projected on their top principal
components. `new_rows` tells a later data version's rows from the ones the reference had.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sklearn.decomposition import PCA

from mmops import artifacts
from mmops.config import DriftParams
from mmops.data.clean import hash_column
from mmops.data.manifest import ID, LABEL
from mmops.features.cache import FeatureCache
from mmops.modalities.base import Modality
from mmops.modalities.media import MediaError

PROFILE_FORMAT = "mmops-drift-profile/1"


# -- measures: each modality's own few numbers per value --------------------------------------

def measure(frame: pd.DataFrame, root: Path, modalities: Sequence[Modality], *,
            strict: bool = False) -> dict[str, list[float]]:
    """Each measure (`<modality>.<name>`) over the rows that have a usable value. Values that
    cannot be read are skipped (reporting them is validation's and cleaning's job), unless
    `strict`: a reference profile is made from cleaned rows, where that is a bug to surface."""
    values: dict[str, list[float]] = {}
    for modality in modalities:
        for value in frame[modality.name]:
            if modality.may_skip(value):
                continue
            try:
                loaded = modality.load(value, root)
            except (MediaError, OSError, ValueError):
                if strict:
                    raise
                continue
            for name, number in modality.measures(loaded).items():
                values.setdefault(f"{modality.name}.{name}", []).append(number)
    return values


# -- which rows the reference has seen --------------------------------------------------------

def _content_part(modality: Modality, frame: pd.DataFrame, position: int, root: Path) -> str:
    """One modality's share of a row's content key, as clean computes it: the media file's
    sha256 (clean's hash column when the frame has one) or the normalised value."""
    value = frame[modality.name].iloc[position]
    if modality.may_skip(value):
        return ""
    if not modality.media:
        return modality.normalise(str(value))
    column = hash_column(modality.name)
    if column in frame.columns:
        return str(frame[column].iloc[position])
    return modality.content_key(str(value), root) or ""


def row_keys(frame: pd.DataFrame, root: Path, modalities: Sequence[Modality]) -> list[str | None]:
    """A short hash of each row's content in every modality (what clean calls the same content),
    whatever its id. None where a media file cannot be read: such a row is never taken for one
    the reference had."""
    keys: list[str | None] = []
    for position in range(len(frame)):
        try:
            parts = [[m.name, _content_part(m, frame, position, root)] for m in modalities]
        except (MediaError, OSError, ValueError):
            keys.append(None)
            continue
        # 64 bits: no two of even millions of rows collide by chance, and the profile stays small
        keys.append(hashlib.sha256(json.dumps(parts).encode()).hexdigest()[:16])
    return keys


def new_rows(profile: dict[str, Any], frame: pd.DataFrame, root: Path,
             modalities: Sequence[Modality]) -> tuple[pd.DataFrame, int | None, int]:
    """The rows of `frame` whose content the reference does not hold, how many it does hold
    (None: the profile records no rows, so every row is kept) and how many kept rows carry an
    id of the reference (the same sample, changed)."""
    identity = profile.get("row_identity")
    if identity is None:
        return frame, None, 0
    content, ids = set(identity["content"]), set(identity["sample_ids"])
    keep = np.array([key is None or key not in content for key in row_keys(frame, root, modalities)], dtype=bool)
    kept = frame[keep]
    return kept, int((~keep).sum()), int(kept[ID].astype(str).isin(ids).sum())


# -- the profile -----------------------------------------------------------------------------

def _compact(array: Any) -> list:
    """Nested lists of floats with 5 significant digits: plenty for the tests, and it keeps the
    JSON small."""
    return np.vectorize(lambda x: float(f"{x:.5g}"), otypes=[float])(np.asarray(array, dtype=np.float64)).tolist()


def features_present(features: FeatureCache, sample_ids: Sequence[str], where: str) -> dict[str, np.ndarray]:
    """Each modality's features of the rows that have it, in `sample_ids` order."""
    values, present = features.align(list(sample_ids), where)
    return {m: values[m][present[m]].numpy().astype(np.float64) for m in values}


def build_profile(frame: pd.DataFrame, features: FeatureCache | None, root: Path, modalities: Sequence[Modality],
                  components: int = DriftParams.components, seen: pd.DataFrame | None = None) -> dict[str, Any]:
    """The reference profile (JSON-serialisable) of `frame`, the train split's rows (canonical
    columns, as the split manifest holds them), with their features from the feature cache
    (None: a profile without feature distributions, whose checks are then skipped). `seen`
    (default: `frame`) are the rows a later data version's new rows are told from: training
    passes its whole data version, as its val and test rows are not new data either."""
    profile: dict[str, Any] = {
        "format": PROFILE_FORMAT,
        "rows": len(frame),
        # what tells a later data version's new rows from the ones this data version had (`new_rows`)
        "row_identity": {"sample_ids": [str(i) for i in (frame if seen is None else seen)[ID]],
                         "content": row_keys(frame if seen is None else seen, root, modalities)},
        "labels": {str(k): int(v) for k, v in frame[LABEL].value_counts().sort_index().items()},
        "measures": {name: _compact(np.array(v)) for name, v in measure(frame, root, modalities, strict=True).items()},
        "features": {},
    }
    if features is None:
        return profile
    for name, values in features_present(features, frame[ID], "the feature cache").items():
        if len(values) < 2:
            continue  # nothing to fit a basis on
        pca = PCA(n_components=min(components, len(values) - 1, values.shape[1]), svd_solver="full")
        projected = pca.fit_transform(values)
        profile["features"][name] = {
            "encoder": features.encoders[name],
            "mean": _compact(pca.mean_),
            "components": _compact(pca.components_),
            "explained_variance_ratio": _compact(pca.explained_variance_ratio_),
            "projected": _compact(projected),  # the reference rows, one list per row
        }
    return profile


def save_profile(path: Path, profile: dict[str, Any]) -> Path:
    """Write the profile atomically, as compact JSON (indented, it would be several times larger)."""
    return artifacts.write_text(path, json.dumps(profile, sort_keys=True, separators=(",", ":")) + "\n")


def load_profile(path: Path) -> dict[str, Any]:
    """A profile `save_profile` wrote; a clear error for anything else."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no reference profile; train a model first (it writes one)")
    profile = json.loads(path.read_text(encoding="utf-8"))
    if not isinstance(profile, dict) or profile.get("format") != PROFILE_FORMAT:
        raise ValueError(f"{path}: not a reference profile of this version of mmops ({PROFILE_FORMAT}); retrain")
    return profile
