"""Classification metrics on a held-out split."""

from __future__ import annotations

import numpy as np
import pandas as pd

from mmops.evaluation.bootstrap import Resampler, interval, macro_f1
from mmops.evaluation.calibration import expected_calibration_error


def classification_metrics(y_true: np.ndarray, y_pred: np.ndarray, num_classes: int,
                           probabilities: np.ndarray | None = None) -> dict[str, float]:
    """Accuracy and macro-F1 (over every configured class, so an unpredicted class counts as 0):
    the same macro-F1 the gate and the card resample; with the answers' `probabilities` (N, C),
    their expected calibration error too."""
    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    scores = {"accuracy": float((y_true == y_pred).mean()) if len(y_true) else 0.0,
              "macro_f1": macro_f1(y_true, y_pred, num_classes)}
    if probabilities is not None and len(y_true):
        # rounded: float kernels differ in the last bits between CPUs, and metrics are committed
        scores["ece"] = round(expected_calibration_error(probabilities, y_true), 4)
    return scores


def score_models(log_probs: dict[str, np.ndarray], y_true: np.ndarray, present: dict[str, np.ndarray],
                 num_classes: int, resampler: Resampler,
                 uncalibrated: dict[str, np.ndarray] | None = None) -> dict[str, dict[str, float]]:
    """For each model (`fused`, and each modality alone, scored on the rows `present` marks as
    having it; a model no row has gets no score): accuracy, macro-F1, their 95% intervals from
    `resampler` (built on every row), and the expected calibration error; with the models'
    `uncalibrated` log-probabilities too, the ECE before temperature scaling (`ece_uncalibrated`)."""
    scores = {}
    for name, lp in log_probs.items():
        rows = present.get(name, np.ones(len(y_true), bool))
        if not rows.any():
            continue
        predicted = lp.argmax(1)
        scores[name] = (classification_metrics(y_true[rows], predicted[rows], num_classes, np.exp(lp[rows]))
                        | intervals(resampler, y_true, predicted, num_classes, rows))
        if uncalibrated is not None:
            raw = np.exp(uncalibrated[name][rows])
            scores[name]["ece_uncalibrated"] = round(expected_calibration_error(raw, y_true[rows]), 4)
    return scores


def per_class(y_true: np.ndarray, y_pred: np.ndarray, classes: list[str]) -> pd.DataFrame:
    """Precision, recall, F1 and support of each class (a class never predicted: precision 0)."""
    from sklearn.metrics import precision_recall_fscore_support

    precision, recall, f1, support = precision_recall_fscore_support(
        y_true, y_pred, labels=list(range(len(classes))), zero_division=0)
    return pd.DataFrame({"class": classes, "precision": precision, "recall": recall, "f1": f1, "support": support})


def confusion_rows(y_true: np.ndarray, y_pred: np.ndarray, classes: list[str]) -> pd.DataFrame:
    """One row per sample (`actual`, `predicted`), the shape `dvc plots` draws as a confusion matrix."""
    return pd.DataFrame({"actual": [classes[i] for i in y_true], "predicted": [classes[i] for i in y_pred]})


def intervals(resampler: Resampler, y_true: np.ndarray, y_pred: np.ndarray, num_classes: int,
              rows: np.ndarray) -> dict[str, float]:
    """95% intervals of accuracy and macro-F1 over `rows`, from the split's groups resampled
    (`resampler`, built on every test row): `accuracy_low`, `accuracy_high`, `macro_f1_low`, ..."""
    subset = resampler.subset(rows)
    target, predicted = np.asarray(y_true)[rows], np.asarray(y_pred)[rows]
    scores = {"accuracy": subset.accuracy(target, predicted),
              "macro_f1": subset.macro_f1(target, predicted, num_classes)}
    out = {}
    for name, values in scores.items():
        out[f"{name}_low"], out[f"{name}_high"] = (round(v, 4) for v in interval(values))
    return out
