"""Pieces several fusion methods share: their common options, a classifier MLP, per-modality
standardisation with the train split's statistics, a mask with one modality alone, and the
base of the methods that read every modality in one model (`JointFusion`)."""

from __future__ import annotations

from abc import abstractmethod
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from mmops.models.fusion.base import FUSED, Features, FusionModel, Mask


@dataclass(frozen=True)
class HeadOptions:
    """A hidden layer's width (0: a linear classifier) and the dropout before each layer."""

    hidden_dim: int = 256
    dropout: float = 0.2

    def __post_init__(self) -> None:
        if self.hidden_dim < 0 or not 0 <= self.dropout < 1:
            raise ValueError(f"params.yaml: train.fusions needs hidden_dim >= 0 and 0 <= dropout < 1, got {self}")


def classifier_mlp(in_dim: int, num_classes: int, *, hidden_dim: int, dropout: float) -> nn.Sequential:
    """Dropout, a hidden GELU layer of `hidden_dim` with dropout (none when 0), then a linear
    layer to the classes' logits."""
    layers: list[nn.Module] = [nn.Dropout(dropout)]
    if hidden_dim > 0:
        layers += [nn.Linear(in_dim, hidden_dim), nn.GELU(), nn.Dropout(dropout)]
        in_dim = hidden_dim
    layers.append(nn.Linear(in_dim, num_classes))
    return nn.Sequential(*layers)


class Standardise(nn.Module):
    """(x - mean) / std per feature, with the train split's statistics (`fit`), stored with the
    model so serving standardises the same way. A feature that is constant in training (a spread
    below `CONSTANT`), such as a channel no training image activates, is centred and not scaled,
    as scikit-learn's StandardScaler treats a zero variance: dividing by its ~0 spread would turn
    the first input that does activate it, at serving or from an encoder being fine-tuned, into
    a value in the millions. (A rare but real feature keeps its scaling.)"""

    CONSTANT = 1e-4  # absolute: the features' spreads are ~0.5 (image) and ~0.05 (text) at the median

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.register_buffer("mean", torch.zeros(dim))
        self.register_buffer("std", torch.ones(dim))

    @torch.no_grad()
    def fit(self, features: torch.Tensor) -> None:
        self.mean.copy_(features.mean(0))
        std = features.std(0, correction=0)
        self.std.copy_(torch.where(std < self.CONSTANT, torch.ones_like(std), std))

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return (features - self.mean) / self.std


def alone(present: Mask, modality: str) -> Mask:
    """`present` with every other modality masked out where `modality` is present: how "this
    modality alone" is scored through a method's fused path. A sample without it keeps its mask
    (its answer is never scored as this modality's)."""
    has = present[modality]
    return {m: p if m == modality else p & ~has for m, p in present.items()}


def together(present: Mask, chosen: tuple[str, ...]) -> Mask:
    """`present` with every modality outside `chosen` masked out where a sample has all of
    `chosen`: how a subset of the modalities (a pair of three) is scored through the fused path.
    A sample without them all keeps its mask (its answer is never scored as the subset's)."""
    has = torch.stack([present[m] for m in chosen]).all(dim=0)
    return {m: p if m in chosen else p & ~has for m, p in present.items()}


def subsets(modalities: tuple[str, ...]) -> dict[str, tuple[str, ...]]:
    """Every pair, triple... of `modalities` short of all of them, by name (`image-text`): with
    two modalities, none; with three, the three pairs. ("-" joins them: MLflow's metric names
    allow it.)"""
    from itertools import combinations

    return {"-".join(c): c for size in range(2, len(modalities)) for c in combinations(modalities, size)}


def stacked_mask(present: Mask, modalities: tuple[str, ...]) -> torch.Tensor:
    """(N, M) bool, in the model's order; refuses a sample with no modality at all."""
    mask = torch.stack([present[m] for m in modalities], dim=1)
    if not bool(mask.any(dim=1).all()):
        raise ValueError("every sample needs at least one modality")
    return mask


def label_loss(log_probs: torch.Tensor, target: torch.Tensor, smoothing: float = 0.0) -> torch.Tensor:
    """Cross-entropy of log-probabilities, with label smoothing `smoothing` (the target keeps
    1 - smoothing, the rest spread evenly over every class)."""
    nll = F.nll_loss(log_probs, target)
    return nll if smoothing == 0 else (1 - smoothing) * nll - smoothing * log_probs.mean(dim=1).mean()


class JointFusion(FusionModel):
    """A method that reads every present modality in one model (concat, gated, attention), each
    modality standardised with the train split's statistics (`joint_input`: zero where a sample
    lacks it, beside a presence flag per modality). "A modality alone" is its fused path with
    the others masked; it learns from one loss, the cross-entropy of the fused prediction."""

    Options = HeadOptions

    def __init__(self, dims: dict[str, int], num_classes: int, *, hidden_dim: int, dropout: float) -> None:
        super().__init__(dims, num_classes)
        self.hidden_dim, self.dropout = hidden_dim, dropout
        self.standardise = nn.ModuleDict({m: Standardise(d) for m, d in dims.items()})

    def arguments(self) -> dict[str, Any]:
        return {"hidden_dim": self.hidden_dim, "dropout": self.dropout}

    def joint_input(self, features: Features, present: Mask) -> tuple[torch.Tensor, torch.Tensor]:
        """The (N, M) presence mask, and (N, sum of dims + M): every modality standardised and
        zeroed where absent, then the presence flags."""
        mask = stacked_mask(present, self.modalities)
        parts = [self.standardise[m](features[m]) * mask[:, i:i + 1] for i, m in enumerate(self.modalities)]
        return mask, torch.cat([*parts, mask.to(parts[0].dtype)], dim=1)

    @abstractmethod
    def classify(self, features: Features, embeddings: dict[str, torch.Tensor], present: Mask) -> torch.Tensor:
        """Log-probabilities (N, C) from the modalities `present` marks."""

    def answer(self, features: Features, embeddings: dict[str, torch.Tensor], present: Mask) -> dict[str, torch.Tensor]:
        out = {m: self.classify(features, embeddings, alone(present, m)) for m in self.modalities}
        out[FUSED] = self.classify(features, embeddings, present)
        return out

    def loss(self, log_probs: dict[str, torch.Tensor], target: torch.Tensor, present: Mask,
             smoothing: float = 0.0) -> torch.Tensor:
        """Cross-entropy of the fused prediction: one model, one loss."""
        return label_loss(log_probs[FUSED], target, smoothing)

    def prepare(self, features: Features, present: Mask) -> None:
        for m, standardise in self.standardise.items():
            standardise.fit(features[m][present[m]])
