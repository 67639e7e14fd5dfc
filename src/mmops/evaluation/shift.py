"""How a model holds up on data drawn another way (another vendor's art, other wording): the
fused model and each modality alone scored on a labelled set, and the fusion regret, how far
the best single modality beats the fused model on the same rows (above 0: fusing lost to one
of its own inputs; the seeds promise it never does). Used by the shift stage and the gate."""

from __future__ import annotations

from typing import Any

import numpy as np

from mmops.evaluation.bootstrap import macro_f1
from mmops.evaluation.metrics import classification_metrics
from mmops.models.fusion import FUSED


def fusion_regret(target: np.ndarray, fused: np.ndarray, singles: dict[str, np.ndarray],
                  present: dict[str, np.ndarray], num_classes: int) -> dict[str, Any]:
    """From predicted class indices: for each modality, its accuracy minus the fused model's on
    the rows that have it (`present`; absent from it: every row). The largest (`regret`, with
    `regret_modality`), and the largest in macro-F1 (`regret_macro_f1`); {} with no modality."""
    found: dict[str, tuple[float, float]] = {}
    for name, predicted in singles.items():
        rows = present.get(name, np.ones(len(target), bool))
        if rows.any():
            y = target[rows]
            found[name] = (float((predicted[rows] == y).mean() - (fused[rows] == y).mean()),
                           macro_f1(y, predicted[rows], num_classes) - macro_f1(y, fused[rows], num_classes))
    if not found:
        return {}
    worst = max(found, key=lambda m: found[m][0])
    return {"regret": round(found[worst][0], 4), "regret_modality": worst,
            "regret_macro_f1": round(max(r[1] for r in found.values()), 4)}


def score_set(log_probs: dict[str, np.ndarray], y_true: np.ndarray, present: dict[str, np.ndarray],
              num_classes: int) -> dict[str, Any]:
    """Accuracy, macro-F1 and ECE of each model (`fused` on every row, each modality alone on the
    rows `present` marks as having it) and the fusion regret (`fusion_regret`)."""
    everywhere = np.ones(len(y_true), bool)
    models: dict[str, dict[str, float]] = {}
    for name, lp in log_probs.items():
        rows = present.get(name, everywhere)
        if rows.any():
            models[name] = classification_metrics(y_true[rows], lp[rows].argmax(1), num_classes, np.exp(lp[rows])) \
                | {"samples": int(rows.sum())}
    singles = {name: lp.argmax(1) for name, lp in log_probs.items() if name != FUSED and name in models}
    return {"samples": int(len(y_true)), "models": models,
            **fusion_regret(y_true, log_probs[FUSED].argmax(1), singles, present, num_classes)}
