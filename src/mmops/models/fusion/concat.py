"""Early fusion by concatenation: each modality's features standardised (zero where the sample
lacks it), side by side with a flag per modality saying which are present, into one MLP. The
simplest joint model: it can learn interactions late fusion cannot, and needs modality dropout
(`train.modality_dropout`) to answer well with a modality missing."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from mmops.models.fusion.base import FUSED, Features, FusionModel, Mask, register_fusion
from mmops.models.fusion.parts import HeadOptions, Standardise, alone, stacked_mask


@register_fusion
class ConcatFusion(FusionModel):
    """`fused` is an MLP over [standardised features of each present modality (zeros if absent),
    presence flags]. "A modality alone" is the same MLP with the others masked out."""

    method = "concat"
    Options = HeadOptions

    def __init__(self, dims: dict[str, int], num_classes: int, *, hidden_dim: int, dropout: float) -> None:
        super().__init__(dims, num_classes)
        self.hidden_dim, self.dropout = hidden_dim, dropout
        self.standardise = nn.ModuleDict({m: Standardise(d) for m, d in dims.items()})
        width = sum(dims.values()) + len(dims)
        layers: list[nn.Module] = [nn.Dropout(dropout)]
        if hidden_dim > 0:
            layers += [nn.Linear(width, hidden_dim), nn.GELU(), nn.Dropout(dropout)]
            width = hidden_dim
        layers.append(nn.Linear(width, num_classes))
        self.mlp = nn.Sequential(*layers)

    def arguments(self) -> dict[str, Any]:
        return {"hidden_dim": self.hidden_dim, "dropout": self.dropout}

    def classify(self, features: Features, present: Mask) -> torch.Tensor:
        """Log-probabilities (N, C) from the modalities `present` marks."""
        mask = stacked_mask(present, self.modalities)
        parts = [self.standardise[m](features[m]) * mask[:, i:i + 1] for i, m in enumerate(self.modalities)]
        return F.log_softmax(self.mlp(torch.cat([*parts, mask.to(parts[0].dtype)], dim=1)).float(), dim=-1)

    def forward(self, features: Features, present: Mask) -> dict[str, torch.Tensor]:
        out = {m: self.classify(features, alone(present, m)) for m in self.modalities}
        out[FUSED] = self.classify(features, present)
        return out

    def loss(self, outputs: dict[str, torch.Tensor], target: torch.Tensor, present: Mask) -> torch.Tensor:
        """Cross-entropy of the fused prediction: one model, one loss."""
        return F.nll_loss(outputs[FUSED], target)

    def prepare(self, features: Features, present: Mask) -> None:
        for m, standardise in self.standardise.items():
            standardise.fit(features[m][present[m]])
