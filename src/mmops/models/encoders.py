"""A fine-tuned encoder is part of its model: the features of new inputs come from the weights the
checkpoint carries, made as serving makes them (its precision and kind of device)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from mmops.device import feature_dtype
from mmops.features.cache import check_encoders


def encode_with_model(modality: Any, ckpt: dict[str, Any], values: Sequence[str], present: torch.Tensor,
                      root: Path, *, batch_size: int) -> torch.Tensor:
    """Features (N, D) of `values` (media under `root`; rows `present` marks as absent stay zeros)
    from the fine-tuned encoder the checkpoint `ckpt` carries for `modality`, after checking its
    weights against the hash the model records."""
    made = ckpt["encoders"][modality.name]
    weights = ckpt["encoder_weights"][modality.name]
    device = torch.device(made["device"]) if made["device"] != "cuda" or torch.cuda.is_available() else None
    if device is None:
        raise ValueError(f"the model's {modality.name} encoder was fine-tuned on CUDA: evaluate it on a CUDA host")
    dtype = feature_dtype(made["dtype"], device)
    check_encoders({modality.name: made}, {modality.name: modality.identity(dtype, device, weights)},
                   made_by="the model", expected_by="its fine-tuned weights")
    out = torch.zeros(len(values), modality.feature_dim)
    mask = present.cpu()
    if mask.any():
        encode = modality.encoder(device, dtype, weights)
        out[mask] = encode([v for v, has in zip(values, mask.tolist()) if has], batch_size=batch_size,
                           load=lambda value: modality.load(value, root))
    return out
