"""Alignment: the CLIP objective (Radford et al., "Learning Transferable Visual Models From
Natural Language Supervision", 2021) beside the label loss. Each modality's embedding inside
the fusion method is projected into one shared space; the symmetric InfoNCE loss pulls the
image and the text of the same sample together and pushes those of other samples in the batch
apart, at a learned temperature. It shapes the representations the method fuses (through
`train.contrastive_weight`) and makes cross-modal retrieval possible."""

from __future__ import annotations

import itertools
import math

import torch
from torch import nn
from torch.nn import functional as F

MAX_LOGIT_SCALE = math.log(100.0)  # CLIP's clamp: a temperature below 0.01 makes training unstable


class Alignment(nn.Module):
    """Per modality a linear projection to `dim`, L2-normalised; one learned temperature."""

    def __init__(self, dims: dict[str, int], dim: int) -> None:
        super().__init__()
        self.dim = dim
        self.project = nn.ModuleDict({m: nn.Linear(d, dim, bias=False) for m, d in dims.items()})
        self.logit_scale = nn.Parameter(torch.tensor(math.log(1 / 0.07)))  # CLIP's initial temperature

    def forward(self, embeddings: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Each modality's embeddings in the shared space, unit length (N, dim)."""
        return {m: F.normalize(self.project[m](e.float()), dim=-1) for m, e in embeddings.items() if m in self.project}

    def loss(self, embeddings: dict[str, torch.Tensor], present: dict[str, torch.Tensor]) -> torch.Tensor:
        """The symmetric InfoNCE loss, averaged over every pair of modalities, on the samples
        that have both (a pair with fewer than two such samples adds nothing)."""
        aligned = self(embeddings)
        scale = self.logit_scale.clamp(max=MAX_LOGIT_SCALE).exp()
        losses = []
        for a, b in itertools.combinations(aligned, 2):
            both = present[a] & present[b]
            if int(both.sum()) < 2:
                continue
            logits = scale * aligned[a][both] @ aligned[b][both].T  # (n, n): the diagonal are the true pairs
            target = torch.arange(len(logits), device=logits.device)
            losses.append((F.cross_entropy(logits, target) + F.cross_entropy(logits.T, target)) / 2)
        return torch.stack(losses).mean() if losses else self.logit_scale.new_zeros(())
