"""The augment stage's logic: extra views of each training sample, made once and encoded by
featurize beside the originals, so that even a head trained on frozen features sees each
emoji drawn and named in more ways than one.

Only the train split is augmented: a view inherits its source's group and split, so it can
never reach validation or test (where it would leak its source's answer). Each modality
declares its own augmentations (`Modality.augment`); a view is a pure function of the source,
the strength and a seed derived from `augment.seed`, the sample id, the view and the modality,
so the stage's outputs are the same bytes on every run.

A view can also be another artist's drawing of the sample (`augment.drawings`: OpenMoji's
picture of a training emoji, beside Google's): the same id in another manifest. Such a view
shows the model the same emoji in another art style (fine-tuning learns from it too).
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from mmops.config import ID, LABEL, AugmentParams
from mmops.modalities.base import Modality, present
from mmops.progress import progress

log = logging.getLogger(__name__)
SOURCE = "source_id"  # the augment manifest's column naming each view's source sample
DRAWING = "drawing"   # ... and the drawing set a view comes from ("" for an augmented view)
MANIFEST, VIEWS = "manifest.csv", "views"  # in the augment stage's folder: the views, their media files


def view_id(sample_id: str, view: int) -> str:
    """The sample id of a view: its source's, marked."""
    return f"{sample_id}~aug{view}"


def view_seed(seed: int, sample_id: str, view: int, modality: str) -> int:
    """A seed of its own for each (sample, view, modality): views do not depend on row order."""
    digest = hashlib.sha256(f"{seed}\0{sample_id}\0{view}\0{modality}".encode()).digest()
    return int.from_bytes(digest[:4], "big")


def view_columns(modalities: Sequence[Modality]) -> list[str]:
    """The augment manifest's columns."""
    return [ID, SOURCE, DRAWING, *(m.name for m in modalities), LABEL, "group", "split"]


def make_views(frame: pd.DataFrame, modalities: Sequence[Modality], params: AugmentParams, root: Path,
               folder: Path) -> pd.DataFrame:
    """`params.views` views of every train-split row of `frame` (the split manifest, media under
    `root`), media views written under `folder`: a manifest of the views, media paths relative
    to `folder`. A modality absent from a row stays absent in its views."""
    names = {m.name for m in modalities}
    unknown = sorted(set(params.strength) - names)
    if unknown:
        raise ValueError(f"params.yaml: 'augment.strength' names {', '.join(unknown)}, "
                         f"which is not a modality (known: {', '.join(sorted(names))})")
    train = frame[frame["split"] == "train"]
    taken = set(frame[ID])
    rows = []
    bar, start = progress(len(train) * params.views, "augment", "view"), time.perf_counter()
    for _, row in train.iterrows():
        for view in range(1, params.views + 1):
            vid = view_id(row[ID], view)
            if vid in taken:
                raise ValueError(f"augment: the view id {vid!r} is already a sample id in the manifest; "
                                 "rename that sample")
            out = {ID: vid, SOURCE: row[ID], DRAWING: "", LABEL: row[LABEL], "group": row.get("group", row[ID]),
                   "split": "train"}
            stem = hashlib.sha256(vid.encode()).hexdigest()[:24]
            for m in modalities:
                value = row[m.name]
                if not present(value):
                    out[m.name] = ""
                    continue
                seed = view_seed(params.seed, row[ID], view, m.name)
                augmented = m.augment(m.load(value, root), params.strength.get(m.name, 0.0), seed)
                out[m.name] = m.store(augmented, folder, f"{m.name}/{stem}")
            rows.append(out)
            bar.update(1)
    bar.close()
    log.info("augment: %d views of %d training samples in %.1f s", len(rows), len(train),
             time.perf_counter() - start)
    return pd.DataFrame(rows, columns=view_columns(modalities))


def drawing_views(frame: pd.DataFrame, modalities: Sequence[Modality], root: Path, name: str,
                  drawn: pd.DataFrame, drawn_root: Path, folder: Path) -> pd.DataFrame:
    """A view of every train-split sample of `frame` (media under `root`) that the drawing set
    `name` has (`drawn`: its usable rows, media under `drawn_root`): the set's value of each
    modality it fills, the sample's for the rest; the sample's label, group and split. Media are
    written under `folder`. A drawing labelled otherwise than its sample is an error naming both."""
    training = frame[frame["split"] == "train"].set_index(ID, drop=False)
    taken = set(frame[ID])
    rows = []
    for _, drawing in drawn[drawn[ID].isin(training.index)].iterrows():
        sample = training.loc[drawing[ID]]
        if drawing[LABEL] != sample[LABEL]:
            raise ValueError(f"augment.drawings.{name}: sample {drawing[ID]!r} is {drawing[LABEL]!r} there "
                             f"but {sample[LABEL]!r} in the dataset")
        vid = f"{drawing[ID]}~{name}"
        if vid in taken:
            raise ValueError(f"augment: the view id {vid!r} is already a sample id in the manifest; rename that sample")
        out = {ID: vid, SOURCE: drawing[ID], DRAWING: name, LABEL: sample[LABEL],
               "group": sample.get("group", drawing[ID]), "split": "train"}
        stem = hashlib.sha256(vid.encode()).hexdigest()[:24]
        for m in modalities:
            value, base = (drawing[m.name], drawn_root) if present(drawing.get(m.name, "")) else (sample[m.name], root)
            out[m.name] = m.store(m.load(value, base), folder, f"{m.name}/{stem}") if present(value) else ""
        rows.append(out)
    log.info("augment: %d drawings from '%s' of %d training samples", len(rows), name, len(training))
    return pd.DataFrame(rows, columns=view_columns(modalities))
