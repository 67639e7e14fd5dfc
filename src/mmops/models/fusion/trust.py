"""Trust-weighted fusion: late fusion's heads, each modality weighted per sample by how far its
head can be trusted on this input. The weights come from each head's own confidence (its top
log-probability) through a small model fitted on validation data, and the heads' answers are
combined as a weighted product of experts:

    w(x) = softmax over the present m of (a_m + b_m * max_c log p_m(c | x))
    fused = log_softmax(sum_m w_m(x) * log p_m(. | x))

A fixed mixture (`late`) keeps trusting the image as much on a drawing style it never saw as on
its own; here an unsure image head gives way to a sure text head sample by sample. The 2M
coefficients are fitted on validation by minimising its log-loss, as `late` fits its mixture;
before that fit (during training) the fusion is the plain geometric mean of the heads."""

from __future__ import annotations

import torch
from torch.nn import functional as F

from mmops.models.fusion.base import Features, FusionModel, Mask, register_fusion
from mmops.models.fusion.late import LateFusion


@register_fusion
class TrustFusion(LateFusion):
    """Late fusion's heads and losses; per-sample, confidence-driven weights in a product of experts."""

    method = "trust"

    def __init__(self, dims: dict[str, int], num_classes: int, *, hidden_dim: int, dropout: float) -> None:
        super().__init__(dims, num_classes, hidden_dim=hidden_dim, dropout=dropout)
        del self.fusion_weights  # no fixed mixture: the weights are per sample
        # [a_m, b_m] per modality: a buffer, so training's optimiser never sees it
        self.register_buffer("trust_coefficients", torch.zeros(len(dims), 2))

    def trust(self, log_probs: dict[str, torch.Tensor], present: Mask,
              coefficients: torch.Tensor | None = None) -> torch.Tensor:
        """(N, M): each present modality's weight per sample (0 where absent; rows sum to 1)."""
        coefficients = self.trust_coefficients if coefficients is None else coefficients
        confidence = torch.stack([log_probs[m].float().max(dim=1).values for m in self.modalities], dim=1)
        mask = torch.stack([present[m] for m in self.modalities], dim=1)
        if not bool(mask.any(dim=1).all()):
            raise ValueError("every sample needs at least one modality")
        logits = coefficients[:, 0] + coefficients[:, 1] * confidence
        return torch.softmax(logits.masked_fill(~mask, float("-inf")), dim=1)

    def fuse(self, log_probs: dict[str, torch.Tensor], present: Mask, weights: torch.Tensor | None = None,
             sharpness: torch.Tensor | float = 1.0) -> torch.Tensor:
        """The trust-weighted product of the present modalities' probabilities, renormalised
        (raised to `sharpness` first: only while fitting, below)."""
        z = self.trust(log_probs, present, weights)
        stacked = torch.stack([log_probs[m].float() for m in self.modalities], dim=1)  # (N, M, C)
        # an absent modality's answer has weight 0: zero it too, so no -inf * 0 makes a NaN
        stacked = stacked.clamp_min(-1e4).masked_fill(z.unsqueeze(-1) == 0, 0.0)
        return F.log_softmax(sharpness * (z.unsqueeze(-1) * stacked).sum(dim=1), dim=-1)

    def fit_on_validation(self, outputs: dict[str, torch.Tensor], target: torch.Tensor, present: Mask) -> None:
        """The trust coefficients with the lowest validation log-loss (L-BFGS from the geometric
        mean; the log-loss is smooth in them), fitted together with a sharpness: a product of
        weights summing to 1 is softer than its parts, and the weights are only right at the
        right sharpness. The sharpness itself is then left to `calibrate`, whose temperature for
        `fused` finds it again, so that a modality alone stays exactly the fused path with the
        others masked. Rounded to 4 decimals, so the model does not depend on the CPU's last bits."""
        device = self.trust_coefficients.device
        outputs = {m: outputs[m].detach().to(device) for m in self.modalities}
        present = {m: present[m].to(device) for m in self.modalities}
        target = target.to(device)
        coefficients = torch.zeros_like(self.trust_coefficients, requires_grad=True)
        log_sharpness = torch.zeros((), device=device, requires_grad=True)  # s = exp(.) stays positive
        optimizer = torch.optim.LBFGS([coefficients, log_sharpness], max_iter=200, line_search_fn="strong_wolfe")

        def closure() -> torch.Tensor:
            optimizer.zero_grad()
            loss = F.nll_loss(self.fuse(outputs, present, coefficients, log_sharpness.exp()), target)
            loss.backward()
            return loss

        with torch.enable_grad():
            optimizer.step(closure)
        if bool(torch.isfinite(coefficients).all()):  # else a degenerate validation set: keep the geometric mean
            self.trust_coefficients.copy_(coefficients.detach().round(decimals=4))

    @torch.no_grad()
    def contributions(self, features: Features, present: Mask, outputs: dict[str, torch.Tensor],
                      chosen: torch.Tensor) -> dict[str, torch.Tensor]:
        """A product of experts does not split into additive parts: each modality's share is how
        much the fused probability drops without it (the generic rule)."""
        return FusionModel.contributions(self, features, present, outputs, chosen)
