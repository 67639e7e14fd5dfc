"""How far a model's confidence can be taken at its word: the reliability table behind a
reliability diagram, and the expected calibration error it sums to."""

from __future__ import annotations

import numpy as np
import pandas as pd

BINS = 15  # Guo et al.'s choice: equal-width confidence bins


def reliability(confidence: np.ndarray, correct: np.ndarray, bins: int = BINS) -> pd.DataFrame:
    """Answers binned by their confidence (the probability of the answered class) into `bins`
    equal-width bins: per non-empty bin its bounds, mean confidence, accuracy and count. A
    calibrated model's accuracy equals its confidence in every bin."""
    confidence, correct = np.asarray(confidence, dtype=float), np.asarray(correct, dtype=float)
    which = np.minimum((confidence * bins).astype(int), bins - 1)  # confidence 1.0 falls in the last bin
    rows = [{"low": b / bins, "high": (b + 1) / bins, "confidence": confidence[which == b].mean(),
             "accuracy": correct[which == b].mean(), "count": int((which == b).sum())} for b in np.unique(which)]
    return pd.DataFrame(rows, columns=["low", "high", "confidence", "accuracy", "count"])


def expected_calibration_error(probabilities: np.ndarray, target: np.ndarray, bins: int = BINS) -> float:
    """ECE (Guo et al., "On Calibration of Modern Neural Networks", 2017): the mean over answers
    of |accuracy - mean confidence| in their confidence bin. 0 is perfectly calibrated."""
    probabilities, target = np.asarray(probabilities, dtype=float), np.asarray(target)
    if len(target) == 0:
        raise ValueError("calibration needs at least one answer")
    return calibration_error(reliability(probabilities.max(axis=1), probabilities.argmax(axis=1) == target, bins))


def calibration_error(table: pd.DataFrame) -> float:
    """The ECE a `reliability` table sums to: its bins' |accuracy - confidence|, weighted by count."""
    return float((table["count"] * (table["accuracy"] - table["confidence"]).abs()).sum() / table["count"].sum())
