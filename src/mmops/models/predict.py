"""Running a fusion model over features: what evaluate, explanations and serving share."""

from __future__ import annotations

import torch

from mmops.models.fusion import FUSED, Features, FusionModel, FusionOutput, Mask, all_present
from mmops.models.fusion.parts import subsets, together


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


def predict_subsets(model: FusionModel, features: Features, device: torch.device,
                    present: Mask) -> tuple[FusionOutput, Mask]:
    """`predict`, with an answer for each subset of the modalities short of all of them besides
    (with three, each pair, named `image-text`: the fused path with the others masked, as if the
    record had only those); and the rows each answer is for: those that have its modalities
    (`fused`, every row, is not in it)."""
    out = predict(model, features, device, present)
    log_probs, rows = dict(out.log_probs), dict(present)
    for name, chosen in subsets(model.modalities).items():
        log_probs[name] = predict(model, features, device, together(present, chosen)).log_probs[FUSED]
        rows[name] = torch.stack([present[m] for m in chosen]).all(dim=0)
    return FusionOutput(log_probs, out.embeddings), rows
