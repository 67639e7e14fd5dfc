"""evaluate's tables of the test split: confusion rows, calibration, precision / recall / F1 per
class for every model side by side, and each test row's answers."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from mmops.data.manifest import ID, LABEL
from mmops.evaluation.calibration import reliability
from mmops.evaluation.metrics import confusion_rows, per_class
from mmops.models.fusion import FUSED


def evaluation_tables(test_rows: pd.DataFrame, y: np.ndarray, log_probs: dict[str, Any], present: dict[str, Any],
                classes: list[str], decimals: int) -> dict[str, pd.DataFrame]:
    """The tables `confusion`, `calibration`, `per_class` (committed for `dvc plots`: floats
    rounded to `decimals`) and `predictions`, from each model's log-probabilities on the test
    rows; a model a row lacks the modalities of (`present`) has no answer there."""
    answer = {name: lp.argmax(1) for name, lp in log_probs.items()}
    confidence = {name: np.exp(lp).max(1) for name, lp in log_probs.items()}
    has = {name: present.get(name, np.ones(len(y), bool)) for name in log_probs}
    table = pd.DataFrame({"class": classes})
    for name in [n for n in log_probs if has[n].any()]:  # each model's precision, recall and F1 side by side
        scored = per_class(y[has[name]], answer[name][has[name]], classes).drop(columns=["class", "support"])
        table = table.join(scored.add_prefix(f"{name}_"))
    table["support"] = per_class(y, answer[FUSED], classes)["support"]
    predictions = pd.DataFrame({
        ID: test_rows[ID].to_numpy(), LABEL: test_rows[LABEL].to_numpy(),
        **{f"pred_{n}": np.where(has[n], [classes[i] for i in answer[n]], "") for n in log_probs},
        **{f"confidence_{n}": np.where(has[n], confidence[n].round(decimals), np.nan) for n in log_probs},
    })
    return {"confusion": confusion_rows(y, answer[FUSED], classes),
            "calibration": reliability(confidence[FUSED], answer[FUSED] == y).round(decimals),
            "per_class": table.round(decimals), "predictions": predictions}
