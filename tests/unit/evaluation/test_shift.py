"""The shift set's scores: each model, and the fusion regret on the same rows."""

import numpy as np
import pytest

from mmops.evaluation.shift import score_set


def _log_probs(answers, classes=3, sure=0.8):
    """Log-probabilities answering `answers` with confidence `sure`."""
    p = np.full((len(answers), classes), (1 - sure) / (classes - 1))
    p[np.arange(len(answers)), answers] = sure
    return np.log(p)


def test_regret_is_the_best_single_modality_minus_fused_on_the_same_rows():
    y = np.array([0, 1, 2, 0, 1, 2, 0, 1])
    out = score_set({"image": _log_probs([0, 1, 2, 0, 1, 2, 2, 2]),   # 6 of 8
                     "text": _log_probs([0, 0, 0, 0, 0, 0, 0, 0]),    # 3 of 8
                     "fused": _log_probs([0, 1, 2, 0, 0, 0, 0, 0])},  # 5 of 8
                    y, {}, 3)
    assert out["models"]["image"]["accuracy"] == 0.75 and out["models"]["fused"]["accuracy"] == 0.625
    assert out["regret"] == pytest.approx(0.125) and out["regret_modality"] == "image"


def test_fusion_that_beats_every_modality_has_a_negative_regret():
    y = np.array([0, 1, 2, 0])
    out = score_set({"image": _log_probs([0, 1, 0, 1]), "text": _log_probs([1, 1, 2, 1]),
                     "fused": _log_probs([0, 1, 2, 0])}, y, {}, 3)
    assert out["regret"] == pytest.approx(-0.5)


def test_a_modality_is_scored_and_compared_only_on_the_rows_that_have_it():
    y = np.array([0, 1, 2, 0])
    present = {"image": np.array([True, True, False, False]), "text": np.ones(4, bool)}
    # the image is right on both rows it has; fused is right there too, wrong elsewhere
    out = score_set({"image": _log_probs([0, 1, 0, 0]), "text": _log_probs([1, 1, 1, 1]),
                     "fused": _log_probs([0, 1, 0, 1])}, y, present, 3)
    assert out["models"]["image"]["samples"] == 2 and out["models"]["image"]["accuracy"] == 1.0
    assert out["models"]["fused"]["accuracy"] == 0.5  # all four rows
    assert out["regret"] == pytest.approx(0.0) and out["regret_modality"] == "image"
