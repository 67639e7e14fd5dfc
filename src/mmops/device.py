"""Device choice: CUDA when present, else CPU."""

from __future__ import annotations

import torch


def pick_device(prefer: str | None = None) -> torch.device:
    """The device to compute on: `prefer` if given, else CUDA when available, else CPU."""
    if prefer:
        return torch.device(prefer)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def feature_dtype(precision: str, device: torch.device) -> torch.dtype:
    """The dtype encoders compute in: `auto` is bf16 on CUDA (made for it) and float32 elsewhere."""
    if precision == "auto":
        return torch.bfloat16 if device.type == "cuda" else torch.float32
    return {"float32": torch.float32, "bfloat16": torch.bfloat16}[precision]
