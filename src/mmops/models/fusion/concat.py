"""Early fusion by concatenation: each modality's features standardised (zero where the sample
lacks it), side by side with a flag per modality saying which are present, into one MLP. The
simplest joint model: it can learn interactions late fusion cannot, and needs modality dropout
(`train.modality_dropout`) to answer well with a modality missing."""

from __future__ import annotations

import torch
from torch.nn import functional as F

from mmops.models.fusion.base import Features, Mask, register_fusion
from mmops.models.fusion.parts import JointFusion, classifier_mlp


@register_fusion
class ConcatFusion(JointFusion):
    """`fused` is an MLP over [standardised features of each present modality (zeros if absent),
    presence flags]. "A modality alone" is the same MLP with the others masked out."""

    method = "concat"

    def __init__(self, dims: dict[str, int], num_classes: int, *, hidden_dim: int, dropout: float) -> None:
        super().__init__(dims, num_classes, hidden_dim=hidden_dim, dropout=dropout)
        self.mlp = classifier_mlp(sum(dims.values()) + len(dims), num_classes, hidden_dim=hidden_dim, dropout=dropout)

    def embed(self, features: Features) -> dict[str, torch.Tensor]:
        """The standardised features: concatenation has no per-modality layer of its own, so
        alignment trains only its projections here and leaves the classifier as it is."""
        return {m: self.standardise[m](features[m]) for m in self.modalities}

    def classify(self, features: Features, embeddings: dict[str, torch.Tensor], present: Mask) -> torch.Tensor:
        _, joint = self.joint_input(features, present)
        return F.log_softmax(self.mlp(joint).float(), dim=-1)
