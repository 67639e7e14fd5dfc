"""Expected calibration error, and the intervals evaluate writes beside each score."""

import numpy as np
import pytest

from mmops.evaluation.bootstrap import Resampler
from mmops.evaluation.calibration import expected_calibration_error
from mmops.evaluation.metrics import classification_metrics, intervals


def test_a_model_right_as_often_as_it_is_confident_has_no_calibration_error():
    # confidence 0.75 in every answer, right on 3 of 4
    probabilities = np.tile([0.75, 0.25], (8, 1))
    target = np.array([0, 0, 0, 1] * 2)
    assert expected_calibration_error(probabilities, target) == pytest.approx(0.0)


def test_an_overconfident_model_has_the_gap_between_confidence_and_accuracy():
    probabilities = np.tile([0.95, 0.05], (10, 1))
    target = np.array([0] * 6 + [1] * 4)  # right 60% of the time at confidence 0.95
    assert expected_calibration_error(probabilities, target) == pytest.approx(0.35)


def test_the_error_weighs_each_confidence_bin_by_its_answers():
    probabilities = np.array([[1.0, 0.0]] * 3 + [[0.55, 0.45]])  # confidence 1.0 lands in the last bin
    target = np.array([0, 0, 0, 1])
    assert expected_calibration_error(probabilities, target) == pytest.approx(0.55 / 4)


def test_metrics_carry_calibration_only_when_given_probabilities():
    y = np.array([0, 1, 1])
    assert "ece" not in classification_metrics(y, y, 2)
    assert classification_metrics(y, y, 2, np.eye(2)[y])["ece"] == pytest.approx(0.0)


def test_intervals_surround_the_score_and_widen_when_rows_come_in_groups():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 3, 400)
    predicted = np.where(rng.random(400) < 0.7, y, (y + 1) % 3)
    rows = np.ones(400, bool)
    alone = intervals(Resampler.of(None, 400, resamples=500, seed=0), y, predicted, 3, rows)
    grouped_y, grouped_p = np.repeat(y[:40], 10), np.repeat(predicted[:40], 10)  # 40 groups of 10 rows
    groups = np.repeat(np.arange(40).astype(str), 10)
    grouped = intervals(Resampler.of(groups, 400, resamples=500, seed=0), grouped_y, grouped_p, 3, rows)
    accuracy = float((y == predicted).mean())
    assert alone["accuracy_low"] < accuracy < alone["accuracy_high"]
    assert (grouped["accuracy_high"] - grouped["accuracy_low"]) > 2 * (alone["accuracy_high"] - alone["accuracy_low"])
    assert alone["macro_f1_low"] < alone["macro_f1_high"]
