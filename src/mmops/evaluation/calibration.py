"""How far a model's confidence can be taken at its word."""

from __future__ import annotations

import numpy as np


def expected_calibration_error(probabilities: np.ndarray, target: np.ndarray, bins: int = 15) -> float:
    """ECE (Guo et al., "On Calibration of Modern Neural Networks", 2017): the answers binned by
    confidence (the top probability) into `bins` equal-width bins; the mean over answers of
    |accuracy - mean confidence| in their bin. 0 is perfectly calibrated."""
    probabilities, target = np.asarray(probabilities, dtype=float), np.asarray(target)
    if len(target) == 0:
        raise ValueError("calibration needs at least one answer")
    confidence, predicted = probabilities.max(axis=1), probabilities.argmax(axis=1)
    which = np.minimum((confidence * bins).astype(int), bins - 1)  # confidence 1.0 falls in the last bin
    correct = (predicted == target).astype(float)
    gap = 0.0
    for b in np.unique(which):
        in_bin = which == b
        gap += in_bin.sum() * abs(correct[in_bin].mean() - confidence[in_bin].mean())
    return float(gap / len(target))
