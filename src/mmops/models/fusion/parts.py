"""Pieces several fusion methods share: per-modality standardisation with the train split's
statistics, a mask with one modality alone, and each method's common options."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from mmops.models.fusion.base import Features, Mask


@dataclass(frozen=True)
class HeadOptions:
    """A hidden layer's width (0: a linear classifier) and the dropout before each layer."""

    hidden_dim: int = 256
    dropout: float = 0.2

    def __post_init__(self) -> None:
        if self.hidden_dim < 0 or not 0 <= self.dropout < 1:
            raise ValueError(f"params.yaml: train.fusions needs hidden_dim >= 0 and 0 <= dropout < 1, got {self}")


class Standardise(nn.Module):
    """(x - mean) / std per feature, with the train split's statistics (`fit`), stored with the
    model so serving standardises the same way."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.register_buffer("mean", torch.zeros(dim))
        self.register_buffer("std", torch.ones(dim))

    @torch.no_grad()
    def fit(self, features: torch.Tensor) -> None:
        self.mean.copy_(features.mean(0))
        self.std.copy_(features.std(0, correction=0).clamp_min(1e-6))

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return (features - self.mean) / self.std


def alone(present: Mask, modality: str) -> Mask:
    """`present` with every other modality masked out where `modality` is present: how "this
    modality alone" is scored through a method's fused path. A sample without it keeps its mask
    (its answer is never scored as this modality's)."""
    has = present[modality]
    return {m: p if m == modality else p & ~has for m, p in present.items()}


def stacked_mask(present: Mask, modalities: tuple[str, ...]) -> torch.Tensor:
    """(N, M) bool, in the model's order; refuses a sample with no modality at all."""
    mask = torch.stack([present[m] for m in modalities], dim=1)
    if not bool(mask.any(dim=1).all()):
        raise ValueError("every sample needs at least one modality")
    return mask


def batch_size_of(features: Features) -> int:
    return len(next(iter(features.values())))
