"""Late fusion: one classifier head per modality, probabilities mixed with weights chosen on
validation data. A modality missing for a sample is masked out, not an error."""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F


class ModalityHead(nn.Module):
    """Standardise the frozen features (statistics of the train split), then a small MLP."""

    def __init__(self, in_dim: int, num_classes: int, *, hidden_dim: int, dropout: float) -> None:
        super().__init__()
        self.register_buffer("mean", torch.zeros(in_dim))
        self.register_buffer("std", torch.ones(in_dim))
        layers: list[nn.Module] = [nn.Dropout(dropout)]
        if hidden_dim > 0:
            layers += [nn.Linear(in_dim, hidden_dim), nn.GELU(), nn.Dropout(dropout)]
            in_dim = hidden_dim
        layers.append(nn.Linear(in_dim, num_classes))
        self.mlp = nn.Sequential(*layers)

    def set_statistics(self, features: torch.Tensor) -> None:
        self.mean.copy_(features.mean(0))
        self.std.copy_(features.std(0, correction=0).clamp_min(1e-6))

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.mlp((features - self.mean) / self.std)


class LateFusionClassifier(nn.Module):
    """`forward` returns log-probabilities per modality and `fused`, their weighted mixture
    over the modalities present for each sample."""

    def __init__(self, dims: dict[str, int], num_classes: int, *, hidden_dim: int, dropout: float) -> None:
        super().__init__()
        self.modalities = tuple(dims)
        self.heads = nn.ModuleDict({
            m: ModalityHead(d, num_classes, hidden_dim=hidden_dim, dropout=dropout) for m, d in dims.items()
        })
        # Fusion weights are fitted on validation data after training (see training.fit).
        self.register_buffer("fusion_weights", torch.full((len(dims),), 1.0 / len(dims)))

    def forward(
        self, features: dict[str, torch.Tensor], present: dict[str, torch.Tensor] | None = None
    ) -> dict[str, torch.Tensor]:
        out = {m: F.log_softmax(self.heads[m](features[m]).float(), dim=-1) for m in self.modalities}
        out["fused"] = self.fuse(out, present)
        return out

    def fuse(
        self, log_probs: dict[str, torch.Tensor], present: dict[str, torch.Tensor] | None = None,
        weights: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """log(sum_m w_m p_m / sum_m w_m) over the modalities present per sample."""
        weights = self.fusion_weights if weights is None else weights
        stacked = torch.stack([log_probs[m] for m in self.modalities], dim=1)  # (N, M, C)
        log_w = torch.log(weights.clamp_min(1e-12)).expand(stacked.shape[0], -1).clone()  # (N, M)
        if present is not None:
            mask = torch.stack([present[m] for m in self.modalities], dim=1)
            if not bool(mask.any(dim=1).all()):
                raise ValueError("every sample needs at least one modality")
            log_w = log_w.masked_fill(~mask, float("-inf"))
        log_w = log_w - torch.logsumexp(log_w, dim=1, keepdim=True)
        return torch.logsumexp(stacked + log_w.unsqueeze(-1), dim=1)
