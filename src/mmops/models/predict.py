"""Running a fusion model over features: what evaluate, explanations and serving share."""

from __future__ import annotations

import torch

from mmops.models.fusion import Features, FusionModel, Mask, all_present


@torch.inference_mode()
def predict(model: FusionModel, features: Features, device: torch.device, present: Mask | None = None,
            batch_size: int = 1024) -> dict[str, torch.Tensor]:
    """Log-probabilities (CPU) per modality and fused, for every row of `features`; with no
    `present`, every modality counts as present."""
    present = all_present(features) if present is None else present
    model.eval().to(device)
    n = len(next(iter(features.values())))
    chunks: list[dict[str, torch.Tensor]] = []
    for start in range(0, n, batch_size):
        part = {m: t[start:start + batch_size].to(device) for m, t in features.items()}
        mask = {m: p[start:start + batch_size].to(device) for m, p in present.items()}
        chunks.append({k: v.cpu() for k, v in model(part, mask).items()})
    return {k: torch.cat([c[k] for c in chunks]) for k in chunks[0]} if chunks else {}
