"""The checkpoint format: one dict that rebuilds a trained fusion model and says what made its
features. Written by training, read by evaluate and serving (so serving never imports training)."""

from __future__ import annotations

from typing import Any

from mmops.models.fusion import FusionModel, build_fusion


def checkpoint(model: FusionModel, classes: list[str], *, epoch: int, encoders: dict[str, dict[str, Any]],
               modalities: list[dict[str, Any]], encoder_weights: dict[str, Any] | None = None) -> dict[str, Any]:
    """One dict with everything needed to rebuild and serve `model` (loadable with
    weights_only=True): the architecture and its arguments, the weights, the classes, the epoch
    kept, and what made the features (`encoders`, `modalities`), which serving must reproduce.
    A fine-tuned model carries its fine-tuned encoders' weights (`encoder_weights`, by
    modality): evaluate and serving encode with those, not the packaged ones."""
    return {
        "encoder_weights": dict(encoder_weights or {}),
        "fusion": {"method": model.method, "arguments": model.arguments(),
                   "alignment": model.alignment.dim if model.alignment is not None else None},
        "model": model.state_dict(),
        "temperatures": dict(model.temperatures),
        "dims": dict(model.dims),
        "classes": list(classes),
        "epoch": epoch,
        "encoders": encoders,
        "modalities": modalities,
    }


def model_from_checkpoint(ckpt: dict[str, Any]) -> FusionModel:
    """Rebuild the model saved by `checkpoint`."""
    fusion = ckpt["fusion"]
    model = build_fusion(fusion["method"], ckpt["dims"], len(ckpt["classes"]), **fusion["arguments"])
    if fusion.get("alignment"):
        model.align(fusion["alignment"])
    model.load_state_dict(ckpt["model"])
    model.temperatures = dict(ckpt.get("temperatures", {}))  # none in a model trained before calibration
    return model.eval()
