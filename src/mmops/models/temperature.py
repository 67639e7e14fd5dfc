"""Temperature scaling (Guo et al., "On Calibration of Modern Neural Networks", 2017): one
scalar per output, fitted on validation data, that softens (T > 1) or sharpens (T < 1) the
log-probabilities so that confidence matches accuracy. The answer (the arg max) is unchanged."""

from __future__ import annotations

import math

import torch
from torch.nn import functional as F

BOUNDS = (0.05, 20.0)  # the temperatures searched; a fit at either end says the outputs are degenerate


def fit_temperature(log_probs: torch.Tensor, target: torch.Tensor) -> float:
    """The temperature with the lowest negative log-likelihood of `target` under `log_probs`
    (N, C) divided by it (bounded Brent search over log T: the loss is unimodal in it). Rounded
    to 4 decimals, so a committed model and its metrics do not depend on the CPU's last bits."""
    from scipy.optimize import minimize_scalar

    if len(target) == 0:
        raise ValueError("temperature scaling needs at least one validation answer")
    # finite floor: a log-probability of -inf (a mixture's class no head gives mass) would be NaN at T
    scores = log_probs.detach().double().cpu().clamp_min(-1e4)
    target = target.cpu()

    def loss(log_t: float) -> float:
        return float(F.cross_entropy(scores / math.exp(log_t), target))

    found = minimize_scalar(loss, bounds=tuple(math.log(b) for b in BOUNDS), method="bounded",
                            options={"xatol": 1e-5})
    return round(math.exp(found.x), 4)


def scaled(log_probs: torch.Tensor, temperature: float) -> torch.Tensor:
    """`log_probs` at `temperature`, renormalised (log-probabilities again)."""
    return F.log_softmax(log_probs / temperature, dim=-1)
