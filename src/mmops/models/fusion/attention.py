"""Attention fusion: each modality becomes one token, and a small transformer encoder reads a
[CLS] token beside them (the way ViT and BERT classify). Self-attention lets every modality's
token be rewritten in the light of the others before the [CLS] token gathers them; a modality
a sample lacks is masked out of attention, so it never influences that sample's answer."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from mmops.models.fusion.base import Features, Mask, register_fusion
from mmops.models.fusion.parts import JointFusion, stacked_mask


@dataclass(frozen=True)
class AttentionOptions:
    """The tokens' width (`hidden_dim`, a multiple of `heads`), attention heads, encoder
    layers, and the dropout inside the encoder and before the classifier."""

    hidden_dim: int = 128
    heads: int = 4
    layers: int = 1
    dropout: float = 0.2

    def __post_init__(self) -> None:
        if self.heads < 1 or self.layers < 1 or self.hidden_dim < 1 or self.hidden_dim % self.heads:
            raise ValueError("params.yaml: train.fusions.attention needs heads >= 1, layers >= 1 and a "
                             f"hidden_dim that is a multiple of heads, got {self}")
        if not 0 <= self.dropout < 1:
            raise ValueError(f"params.yaml: train.fusions.attention needs 0 <= dropout < 1, got {self}")


@register_fusion
class AttentionFusion(JointFusion):
    """token_m = W_m standardise(x_m) + e_m (a learned embedding saying which modality it is);
    `fused` = classifier(LayerNorm(encoder([CLS, token_1, ..., token_M])[CLS])), with the
    tokens of absent modalities masked as padding. "A modality alone" masks the others."""

    method = "attention"
    Options = AttentionOptions

    def __init__(self, dims: dict[str, int], num_classes: int, *, hidden_dim: int, heads: int, layers: int,
                 dropout: float) -> None:
        super().__init__(dims, num_classes, hidden_dim=hidden_dim, dropout=dropout)
        self.heads, self.layers = heads, layers
        self.tokenize = nn.ModuleDict({m: nn.Sequential(nn.Dropout(dropout), nn.Linear(d, hidden_dim))
                                       for m, d in dims.items()})
        self.modality_embedding = nn.Parameter(torch.randn(len(dims), hidden_dim) * 0.02)
        self.cls = nn.Parameter(torch.randn(1, 1, hidden_dim) * 0.02)
        layer = nn.TransformerEncoderLayer(hidden_dim, heads, dim_feedforward=2 * hidden_dim, dropout=dropout,
                                           activation="gelu", batch_first=True, norm_first=True)
        # no nested-tensor fast path: it would make eval answers depend on how a batch is padded
        self.encoder = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(hidden_dim)
        self.classifier = nn.Sequential(nn.Dropout(dropout), nn.Linear(hidden_dim, num_classes))

    def arguments(self) -> dict[str, Any]:
        return {**super().arguments(), "heads": self.heads, "layers": self.layers}

    def embed(self, features: Features) -> dict[str, torch.Tensor]:
        """Each modality's token before attention (without its modality embedding)."""
        return {m: self.tokenize[m](self.standardise[m](features[m])) for m in self.modalities}

    def classify(self, features: Features, embeddings: dict[str, torch.Tensor], present: Mask) -> torch.Tensor:
        mask = stacked_mask(present, self.modalities)  # (N, M)
        tokens = torch.stack([embeddings[m] for m in self.modalities], dim=1) + self.modality_embedding
        # an absent modality's token is zeroed (its features are placeholders), then masked out of attention
        tokens = tokens.masked_fill(~mask.unsqueeze(-1), 0.0)
        cls = self.cls.expand(len(tokens), -1, -1)
        padding = torch.cat([torch.zeros_like(mask[:, :1]), ~mask], dim=1)  # True: not attended to
        encoded = self.encoder(torch.cat([cls, tokens], dim=1), src_key_padding_mask=padding)
        return F.log_softmax(self.classifier(self.norm(encoded[:, 0])).float(), dim=-1)
