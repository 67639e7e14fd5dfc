"""Running a fusion model over features: what evaluate, explanations and serving share."""

from __future__ import annotations

import torch

from mmops.models.fusion import Features, FusionModel, FusionOutput, Mask, all_present


@torch.inference_mode()
def predict(model: FusionModel, features: Features, device: torch.device, present: Mask | None = None,
            batch_size: int = 1024) -> FusionOutput:
    """The model's output (on the CPU) for every row of `features`, in batches; with no
    `present`, every modality counts as present."""
    present = all_present(features) if present is None else present
    model.eval().to(device)
    n = len(next(iter(features.values())))
    if n == 0:
        raise ValueError("nothing to predict: no rows")
    chunks = []
    for start in range(0, n, batch_size):
        part = {m: t[start:start + batch_size].to(device) for m, t in features.items()}
        mask = {m: p[start:start + batch_size].to(device) for m, p in present.items()}
        chunks.append(model(part, mask).cpu())
    return FusionOutput.cat(chunks)
