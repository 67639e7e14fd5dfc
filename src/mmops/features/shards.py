"""Featurising in shards: the clean manifest cut into contiguous runs of rows, each encoded on
its own (one process, or one Dask worker each), and the parts merged back into one feature
cache in the manifest's order. `stages.featurize` is the same code with one shard."""

from __future__ import annotations

import dataclasses
import logging
import os
import time
from collections.abc import Collection, Sequence
from pathlib import Path

import pandas as pd
import torch

from mmops.config import ID, Params
from mmops.device import feature_dtype, pick_device
from mmops.features.cache import FeatureCache, check_encoders
from mmops.modalities import build_modalities

log = logging.getLogger(__name__)


def shard_ranges(n_rows: int, shards: int) -> list[tuple[int, int]]:
    """`(start, stop)` row ranges that cover `range(n_rows)` once, in order, in at most `shards`
    runs whose sizes differ by one at most; never an empty one, except the single range of an
    empty manifest (so there is always one shard to say which encoders would have run)."""
    if shards < 1 or n_rows < 0:
        raise ValueError(f"shards must be >= 1 and n_rows >= 0, got shards={shards}, n_rows={n_rows}")
    count = max(1, min(shards, n_rows))
    size, extra = divmod(n_rows, count)
    bounds = [0]
    for i in range(count):
        bounds.append(bounds[-1] + size + (i < extra))
    return list(zip(bounds[:-1], bounds[1:]))


def local_threads(workers: int, cores: int | None = None) -> int:
    """Torch threads per worker for `workers` worker processes sharing this machine's cores."""
    return max(1, (cores or os.cpu_count() or 1) // workers)


def encode_shard(params: Params, rows: pd.DataFrame, device: torch.device | str | None = None,
                 threads: int | None = None, root: Path | None = None,
                 skip: Collection[str] = ()) -> FeatureCache:
    """Features of `rows` (a run of the clean manifest, or of the augmented views, whose media
    lie under `root` instead of `data.root`) from each modality's frozen encoder, with each
    encoder's identity. The device (and so the precision) is picked where this runs; `threads`
    sets torch's threads in this process (a Dask worker's), None leaves them. The modalities
    named in `skip` get their presence and identity but zeros for features, their encoder
    never run: the caller encodes them itself (a fine-tuned encoder, from the model's weights)."""
    if threads is not None:
        torch.set_num_threads(threads)
    rows = rows.reset_index(drop=True)
    dev = pick_device(device)
    dtype = feature_dtype(params.featurize.precision, dev)
    features, present, encoders = {}, {}, {}
    for modality in build_modalities(params.modalities):
        mask = torch.tensor([not modality.may_skip(v) for v in rows[modality.name]], dtype=torch.bool)
        out = torch.zeros(len(rows), modality.feature_dim)  # an absent value's features are never used
        if mask.any() and modality.name not in skip:
            start = time.perf_counter()
            encode = modality.encoder(dev, dtype)
            out[mask] = encode(list(rows.loc[mask.numpy(), modality.name]), batch_size=params.featurize.batch_size,
                               load=lambda value, m=modality: m.load(value, root or params.data.root))
            seconds = time.perf_counter() - start
            log.info("featurize: %d %s values on %s (%s) in %.1f s (%.0f/s, model load included)",
                     int(mask.sum()), modality.name, dev, dtype, seconds, int(mask.sum()) / max(seconds, 1e-9))
        features[modality.name], present[modality.name] = out, mask
        encoders[modality.name] = modality.identity(dtype, dev)
    return FeatureCache(list(rows[ID]), features, present, encoders)


def merge(parts: Sequence[FeatureCache]) -> FeatureCache:
    """One cache from the shards' caches, concatenated in the order given. Refuses parts made
    by different encoders (another package version or precision on one worker, say)."""
    if not parts:
        raise ValueError("merge: no shards to merge")
    first = parts[0]
    for i, part in enumerate(parts[1:], start=1):
        check_encoders(part.encoders, first.encoders, made_by=f"shard {i}", expected_by="shard 0",
                       remedy="every worker needs the same packages (constraints.txt) and the same kind of device")
    return FeatureCache(
        [sample_id for part in parts for sample_id in part.sample_ids],
        {m: torch.cat([part.features[m] for part in parts]) for m in first.features},
        {m: torch.cat([part.present[m] for part in parts]) for m in first.present},
        dict(first.encoders),
    )


def encode_manifest(params: Params, rows: pd.DataFrame, root: Path, device: str | None = None,
                    skip: Collection[str] = ()) -> FeatureCache:
    """Features of `rows` (media under `root`) from the same encoders, and the same code, as
    the featurize stage (the modalities in `skip` left for the caller to encode, as `encode_shard`)."""
    local = dataclasses.replace(params, data=dataclasses.replace(params.data, root=Path(root)))
    return encode_shard(local, rows, device, skip=skip)
