"""Gated fusion: a gated multimodal unit (Arevalo et al., "Gated Multimodal Units for
Information Fusion", ICLR workshop 2017). Each modality is projected to a shared width; per
sample, learned gates (a softmax over the modalities present, computed from all of them) weigh
the projections, and one classifier reads the weighted sum. The gates say how much each
modality counted for each answer."""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from mmops.models.fusion.base import Features, Mask, register_fusion
from mmops.models.fusion.parts import JointFusion


@register_fusion
class GatedFusion(JointFusion):
    """h_m = tanh(W_m x_m); z = softmax over present m of (G [x_1, ..., x_M, flags])_m;
    `fused` = classifier(sum_m z_m h_m). With one modality present its gate is 1, so "a
    modality alone" is the classifier on that modality's projection."""

    method = "gated"

    def __init__(self, dims: dict[str, int], num_classes: int, *, hidden_dim: int, dropout: float) -> None:
        super().__init__(dims, num_classes, hidden_dim=hidden_dim, dropout=dropout)
        width = hidden_dim or 128  # the shared width: a gated unit needs one
        self.project = nn.ModuleDict({m: nn.Sequential(nn.Dropout(dropout), nn.Linear(d, width), nn.Tanh())
                                      for m, d in dims.items()})
        self.gate = nn.Sequential(nn.Dropout(dropout), nn.Linear(sum(dims.values()) + len(dims), len(dims)))
        self.classifier = nn.Sequential(nn.Dropout(dropout), nn.Linear(width, num_classes))

    def gates(self, features: Features, present: Mask) -> torch.Tensor:
        """(N, M): each present modality's weight per sample (0 where absent; rows sum to 1)."""
        mask, joint = self.joint_input(features, present)
        return torch.softmax(self.gate(joint).float().masked_fill(~mask, float("-inf")), dim=1)

    def embed(self, features: Features) -> dict[str, torch.Tensor]:
        """h_m: each modality's projection to the shared width."""
        return {m: self.project[m](self.standardise[m](features[m])).float() for m in self.modalities}

    def classify(self, features: Features, embeddings: dict[str, torch.Tensor], present: Mask) -> torch.Tensor:
        z = self.gates(features, present)
        h = torch.stack([embeddings[m] for m in self.modalities], dim=1)
        # an absent modality's projection is multiplied by a zero gate: zero it too, so no NaN passes
        h = h.masked_fill(z.unsqueeze(-1) == 0, 0.0)
        return F.log_softmax(self.classifier((z.unsqueeze(-1) * h).sum(1)).float(), dim=-1)
