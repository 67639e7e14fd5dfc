"""Late fusion: one classifier head per modality, their probabilities mixed with weights fitted
on validation data. A modality missing for a sample is left out of its mixture."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from mmops.models.fusion.base import FUSED, Features, FusionModel, Mask, register_fusion
from mmops.models.fusion.parts import HeadOptions, Standardise, classifier_mlp, label_loss


class ModalityHead(nn.Module):
    """Standardise the frozen features (statistics of the train split), then a small MLP."""

    def __init__(self, in_dim: int, num_classes: int, *, hidden_dim: int, dropout: float) -> None:
        super().__init__()
        self.standardise = Standardise(in_dim)
        self.mlp = classifier_mlp(in_dim, num_classes, hidden_dim=hidden_dim, dropout=dropout)

    def embed(self, features: torch.Tensor) -> torch.Tensor:
        """The representation the last layer classifies (the hidden layer, or the standardised
        features for a linear head)."""
        return self.mlp[:-1](self.standardise(features))


def simplex_grid(parts: int, steps: int) -> torch.Tensor:
    """Every weight vector of `parts` non-negative multiples of 1/steps summing to 1 (only those
    are generated: stars and bars, in lexicographic order)."""
    def compositions(total: int, n: int) -> list[tuple[int, ...]]:
        if n == 1:
            return [(total,)]
        return [(first, *rest) for first in range(total + 1) for rest in compositions(total - first, n - 1)]

    return torch.tensor(compositions(steps, parts), dtype=torch.float32) / steps


def mixture_log_weights(weights: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Per sample, the log of each modality's mixture weight renormalised over the modalities it
    has (N, M); -inf where absent. A fitted weight of 0 is clamped to a tiny one first, so a
    sample whose only modality has weight 0 still gets that modality, at weight 1."""
    log_w = torch.log(weights.clamp_min(1e-12)).expand(mask.shape[0], -1)
    log_w = log_w.masked_fill(~mask, float("-inf"))
    return log_w - torch.logsumexp(log_w, dim=1, keepdim=True)


@register_fusion
class LateFusion(FusionModel):
    """`fused` is log(sum_m w_m p_m / sum_m w_m) over the modalities present per sample."""

    method = "late"
    Options = HeadOptions

    def __init__(self, dims: dict[str, int], num_classes: int, *, hidden_dim: int, dropout: float) -> None:
        super().__init__(dims, num_classes)
        self.hidden_dim, self.dropout = hidden_dim, dropout
        self.heads = nn.ModuleDict({
            m: ModalityHead(d, num_classes, hidden_dim=hidden_dim, dropout=dropout) for m, d in dims.items()
        })
        self.register_buffer("fusion_weights", torch.full((len(dims),), 1.0 / len(dims)))

    def arguments(self) -> dict[str, Any]:
        return {"hidden_dim": self.hidden_dim, "dropout": self.dropout}

    def answer(self, features: Features, embeddings: dict[str, torch.Tensor], present: Mask) -> dict[str, torch.Tensor]:
        out = {m: F.log_softmax(self.heads[m].mlp[-1](embeddings[m]).float(), dim=-1) for m in self.modalities}
        out[FUSED] = self.fuse(out, present)
        return out

    def embed(self, features: Features) -> dict[str, torch.Tensor]:
        return {m: self.heads[m].embed(features[m]) for m in self.modalities}

    def fuse(self, log_probs: dict[str, torch.Tensor], present: Mask, weights: torch.Tensor | None = None) -> torch.Tensor:
        """The weighted mixture of the present modalities' probabilities, as log-probabilities."""
        weights = self.fusion_weights if weights is None else weights
        stacked = torch.stack([log_probs[m] for m in self.modalities], dim=1)  # (N, M, C)
        mask = torch.stack([present[m] for m in self.modalities], dim=1)  # (N, M)
        if not bool(mask.any(dim=1).all()):
            raise ValueError("every sample needs at least one modality")
        log_w = mixture_log_weights(weights, mask)
        return torch.logsumexp(stacked + log_w.unsqueeze(-1), dim=1)

    @torch.no_grad()
    def contributions(self, features: Features, present: Mask, outputs: dict[str, torch.Tensor],
                      chosen: torch.Tensor) -> dict[str, torch.Tensor]:
        """Exact for a mixture: each present modality's part of it (its weight, renormalised over
        the modalities present, times its probability of the chosen class), uncalibrated, as a
        fraction of their sum, times the served (calibrated) fused probability; the shares sum
        to the fused one."""
        mask = torch.stack([present[m].cpu() for m in self.modalities], dim=1)  # (N, M)
        # the very weights `fuse` mixed with, so the shares add up to its probability even where
        # a fitted weight is 0 (a record with only that modality: its share is all of it)
        weights = mixture_log_weights(self.fusion_weights.cpu(), mask).exp()
        rows, chosen = torch.arange(len(chosen)), chosen.cpu()
        device = self.fusion_weights.device
        with self.uncalibrated():  # the mixture as it was mixed, before the temperatures
            raw = self.log_probs({m: t.to(device) for m, t in features.items()},
                                 {m: p.to(device) for m, p in present.items()})
        parts = torch.stack([weights[:, i] * raw[m].float().exp().cpu()[rows, chosen]
                             for i, m in enumerate(self.modalities)], dim=1).masked_fill(~mask, 0.0)
        fused = outputs[FUSED].float().exp().cpu()[rows, chosen]
        scale = fused / parts.sum(1).clamp_min(1e-30)
        return {m: torch.where(mask[:, i], parts[:, i] * scale, torch.nan) for i, m in enumerate(self.modalities)}

    def loss(self, log_probs: dict[str, torch.Tensor], target: torch.Tensor, present: Mask,
             smoothing: float = 0.0) -> torch.Tensor:
        """Each head learns from its own loss, on the samples that have its modality."""
        losses = [label_loss(log_probs[m][present[m]], target[present[m]], smoothing)
                  for m in self.modalities if bool(present[m].any())]
        return torch.stack(losses).sum()

    def prepare(self, features: Features, present: Mask) -> None:
        for m, head in self.heads.items():
            head.standardise.fit(features[m][present[m]])

    def fit_on_validation(self, outputs: dict[str, torch.Tensor], target: torch.Tensor, present: Mask) -> None:
        """The mixture weights on a grid over the simplex with the lowest validation log-loss
        (ties: the first found, so the result is deterministic)."""
        grid = simplex_grid(len(self.modalities), steps=20 if len(self.modalities) <= 3 else 10)
        outputs = {m: outputs[m].to(self.fusion_weights.device) for m in self.modalities}
        present = {m: present[m].to(self.fusion_weights.device) for m in self.modalities}
        target = target.to(self.fusion_weights.device)
        best, best_loss = self.fusion_weights.clone(), float("inf")
        for weights in grid:
            loss = float(F.nll_loss(self.fuse(outputs, present, weights.to(self.fusion_weights.device)), target))
            if loss < best_loss - 1e-9:
                best, best_loss = weights, loss
        self.fusion_weights.copy_(best)
