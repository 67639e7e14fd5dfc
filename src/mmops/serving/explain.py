"""The served answer: per record the label, every class's probability, the modalities used and
an explanation of the decision by modality, for any fusion method."""

from __future__ import annotations

import math
from dataclasses import dataclass

import pandas as pd
import torch

from mmops.models.fusion import FUSED, FusionModel
from mmops.models.fusion.base import Features, Mask
from mmops.models.predict import predict


@dataclass(frozen=True)
class Explained:
    """Fused probabilities (N, C), each modality's own probabilities (N, C), which modalities
    each record had, and each modality's share in the chosen class's fused probability (N,)."""

    fused: torch.Tensor
    heads: dict[str, torch.Tensor]
    present: Mask
    shares: dict[str, torch.Tensor]


def explain(model: FusionModel, features: Features, present: Mask, device: torch.device) -> Explained:
    """Predict and explain: the shares come from the fusion method itself (`contributions`)."""
    outputs = predict(model, features, device, present).log_probs
    chosen = outputs[FUSED].argmax(1)
    with torch.no_grad():
        shares = model.contributions(features, present, outputs, chosen)
    return Explained(
        fused=outputs[FUSED].exp(),
        heads={m: outputs[m].exp() for m in model.modalities},
        present={m: p.cpu() for m, p in present.items()},
        shares=shares,
    )


def answers(explained: Explained, classes: list[str]) -> pd.DataFrame:
    """One row per record: `label`, `confidence`, `probabilities` {class: p}, `modalities` (those
    the record had) and `explanation` {modality: {label, probability, share}}, where `label` and
    `probability` are that modality's own prediction and `share` its part in `confidence`."""
    fused = explained.fused.tolist()
    heads = {m: p.tolist() for m, p in explained.heads.items()}
    present = {m: p.tolist() for m, p in explained.present.items()}
    shares = {m: s.tolist() for m, s in explained.shares.items()}
    rows = []
    for i, probs in enumerate(fused):
        best = max(range(len(classes)), key=probs.__getitem__)
        used = [m for m in heads if present[m][i]]
        explanation = {}
        for m in used:
            own = max(range(len(classes)), key=heads[m][i].__getitem__)
            share = shares[m][i]
            explanation[m] = {"label": classes[own], "probability": heads[m][i][own],
                              "share": None if math.isnan(share) else share}
        rows.append({
            "label": classes[best],
            "confidence": probs[best],
            "probabilities": dict(zip(classes, probs)),
            "modalities": used,
            "explanation": explanation,
        })
    return pd.DataFrame(rows, columns=["label", "confidence", "probabilities", "modalities", "explanation"])


def as_columns(answered: pd.DataFrame) -> pd.DataFrame:
    """`answers` flattened for a table: `label`, `confidence`, `modalities` ("image+text"),
    `p.<class>` per class and `<modality>.label|probability|share` per modality (empty where the
    record had none)."""
    flat = pd.DataFrame({"label": answered["label"], "confidence": answered["confidence"],
                         "modalities": answered["modalities"].map("+".join)})
    probabilities = pd.DataFrame(answered["probabilities"].tolist(), index=answered.index).add_prefix("p.")
    parts = pd.json_normalize(answered["explanation"].tolist()).set_index(answered.index)
    return pd.concat([flat, probabilities, parts], axis=1)
