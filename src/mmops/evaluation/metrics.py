"""Classification metrics on a held-out split."""

from __future__ import annotations

import numpy as np
import pandas as pd

from mmops.evaluation.bootstrap import macro_f1


def classification_metrics(y_true: np.ndarray, y_pred: np.ndarray, num_classes: int) -> dict[str, float]:
    """Accuracy and macro-F1 (over every configured class, so an unpredicted class counts as 0):
    the same macro-F1 the gate and the card resample."""
    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    return {"accuracy": float((y_true == y_pred).mean()) if len(y_true) else 0.0,
            "macro_f1": macro_f1(y_true, y_pred, num_classes)}


def confusion_rows(y_true: np.ndarray, y_pred: np.ndarray, classes: list[str]) -> pd.DataFrame:
    """One row per sample (`actual`, `predicted`), the shape `dvc plots` draws as a confusion matrix."""
    return pd.DataFrame({"actual": [classes[i] for i in y_true], "predicted": [classes[i] for i in y_pred]})
