"""Gated fusion: a gated multimodal unit (Arevalo et al., "Gated Multimodal Units for
Information Fusion", ICLR workshop 2017). Each modality is projected to a shared width; per
sample, learned gates (a softmax over the modalities present, computed from all of them) weigh
the projections, and one classifier reads the weighted sum. The gates say how much each
modality counted for each answer."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from mmops.models.fusion.base import FUSED, Features, FusionModel, Mask, register_fusion
from mmops.models.fusion.parts import HeadOptions, Standardise, alone, stacked_mask


@register_fusion
class GatedFusion(FusionModel):
    """h_m = tanh(W_m x_m); z = softmax over present m of (G [x_1, ..., x_M, flags])_m;
    `fused` = classifier(sum_m z_m h_m). With one modality present its gate is 1, so "a
    modality alone" is the classifier on that modality's projection."""

    method = "gated"
    Options = HeadOptions

    def __init__(self, dims: dict[str, int], num_classes: int, *, hidden_dim: int, dropout: float) -> None:
        super().__init__(dims, num_classes)
        self.hidden_dim, self.dropout = hidden_dim, dropout
        width = hidden_dim or 128  # the shared width: a gated unit needs one
        self.standardise = nn.ModuleDict({m: Standardise(d) for m, d in dims.items()})
        self.project = nn.ModuleDict({m: nn.Sequential(nn.Dropout(dropout), nn.Linear(d, width), nn.Tanh())
                                      for m, d in dims.items()})
        self.gate = nn.Sequential(nn.Dropout(dropout), nn.Linear(sum(dims.values()) + len(dims), len(dims)))
        self.classifier = nn.Sequential(nn.Dropout(dropout), nn.Linear(width, num_classes))

    def arguments(self) -> dict[str, Any]:
        return {"hidden_dim": self.hidden_dim, "dropout": self.dropout}

    def gates(self, features: Features, present: Mask) -> torch.Tensor:
        """(N, M): each present modality's weight per sample (0 where absent; rows sum to 1)."""
        mask = stacked_mask(present, self.modalities)
        x = [self.standardise[m](features[m]) * mask[:, i:i + 1] for i, m in enumerate(self.modalities)]
        logits = self.gate(torch.cat([*x, mask.to(x[0].dtype)], dim=1)).float()
        return torch.softmax(logits.masked_fill(~mask, float("-inf")), dim=1)

    def classify(self, features: Features, present: Mask) -> torch.Tensor:
        """Log-probabilities (N, C) from the modalities `present` marks."""
        z = self.gates(features, present)
        h = torch.stack([self.project[m](self.standardise[m](features[m])).float() for m in self.modalities], dim=1)
        # an absent modality's projection is multiplied by a zero gate: zero it too, so no NaN passes
        h = h.masked_fill(z.unsqueeze(-1) == 0, 0.0)
        return F.log_softmax(self.classifier((z.unsqueeze(-1) * h).sum(1)).float(), dim=-1)

    def forward(self, features: Features, present: Mask) -> dict[str, torch.Tensor]:
        out = {m: self.classify(features, alone(present, m)) for m in self.modalities}
        out[FUSED] = self.classify(features, present)
        return out

    def loss(self, outputs: dict[str, torch.Tensor], target: torch.Tensor, present: Mask) -> torch.Tensor:
        """Cross-entropy of the fused prediction."""
        return F.nll_loss(outputs[FUSED], target)

    def prepare(self, features: Features, present: Mask) -> None:
        for m, standardise in self.standardise.items():
            standardise.fit(features[m][present[m]])
