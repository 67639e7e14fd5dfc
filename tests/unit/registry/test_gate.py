import numpy as np
import pytest
from sklearn.metrics import f1_score

from mmops.config import PromoteParams
from mmops.evaluation.bootstrap import Resampler
from mmops.registry.gate import UNKNOWN, Evaluation, ShiftEvaluation, decide, macro_f1, paired_bootstrap

RNG = np.random.default_rng(0)
TARGET = RNG.integers(0, 4, 400)
CLASSES = ("a", "b", "c", "d")
PARAMS = PromoteParams(min_macro_f1=0.5, max_p95_latency_ms=100, max_regression=0.02, bootstrap_resamples=500,
                       min_margin_over_best_modality=-0.05)


def _noisy(accuracy: float, seed: int, target: np.ndarray = TARGET) -> np.ndarray:
    rng = np.random.default_rng(seed)
    wrong = rng.random(len(target)) > accuracy
    return np.where(wrong, (target + rng.integers(1, 4, len(target))) % 4, target)


def _evaluation(fused, version="2", latency=20.0, classes=CLASSES, present=None, **modalities) -> Evaluation:
    return Evaluation(version=version, target=TARGET, fused=fused,
                      modalities=modalities or {"image": _noisy(0.6, 7), "text": _noisy(0.7, 8)},
                      p95_latency_ms=latency, classes=classes, present=present or {})


def _worse_by(answers: int) -> tuple[np.ndarray, np.ndarray]:
    """A challenger and a champion (85% right) that differ only in `answers` the challenger got wrong."""
    champion = _noisy(0.85, 1)
    challenger = champion.copy()
    flip = np.flatnonzero(challenger == TARGET)[:answers]
    challenger[flip] = (TARGET[flip] + 1) % 4
    return challenger, champion


def _failed(decision) -> list[str]:
    return [r for r in decision.reasons if r.startswith("FAIL")]


def test_macro_f1_matches_sklearn_including_never_predicted_classes():
    predicted = _noisy(0.7, 1)
    predicted[predicted == 3] = 2  # class 3 never predicted
    expected = f1_score(TARGET, predicted, labels=range(5), average="macro", zero_division=0)
    assert macro_f1(TARGET, predicted, 5) == pytest.approx(expected)


def test_an_unknown_answer_counts_as_wrong_not_as_missing():
    predicted = TARGET.copy()
    predicted[:100] = UNKNOWN
    assert macro_f1(TARGET, predicted, 4) < macro_f1(TARGET[100:], predicted[100:], 4) == 1.0


def test_the_paired_interval_is_tight_for_identical_models_and_excludes_zero_for_a_clear_gap():
    resampler = Resampler.of(None, len(TARGET), resamples=300, seed=0)
    same = _noisy(0.8, 1)
    assert paired_bootstrap(resampler, TARGET, same, same, 4) == (0.0, 0.0, 0.0)
    observed, low, high = paired_bootstrap(resampler, TARGET, _noisy(0.9, 1), _noisy(0.6, 2), 4)
    assert 0 < low < observed < high


def test_every_row_its_own_group_is_the_plain_bootstrap_of_rows():
    predicted = _noisy(0.7, 1)
    by_rows = Resampler.of(None, len(TARGET), resamples=200, seed=3)
    by_groups = Resampler.of([f"{i:04d}" for i in range(len(TARGET))], len(TARGET), resamples=200, seed=3)
    assert np.allclose(by_rows.macro_f1(TARGET, predicted, 4), by_groups.macro_f1(TARGET, predicted, 4))


def test_resampling_groups_widens_the_interval_when_a_group_answers_as_one():
    # 40 groups of 10 rows; each group is all right or all wrong: 40 pieces of evidence, not 400
    groups = np.repeat(np.arange(40), 10).astype(str)
    right = np.repeat(np.random.default_rng(1).random(40) < 0.7, 10)
    predicted = np.where(right, TARGET, (TARGET + 1) % 4)
    width = {}
    for name, labels in (("rows", None), ("groups", groups)):
        low, high = np.percentile(Resampler.of(labels, 400, resamples=1000, seed=0).accuracy(TARGET, predicted),
                                  [2.5, 97.5])
        width[name] = high - low
    assert width["groups"] > 2 * width["rows"]


def test_a_resample_draws_whole_groups():
    groups = np.repeat(["x", "y", "z"], [1, 1, 98])
    predicted = np.where(groups == "z", TARGET[:100], (TARGET[:100] + 1) % 4)  # z right, x and y wrong
    accuracy = Resampler.of(groups, 100, resamples=500, seed=0).accuracy(TARGET[:100], predicted)
    # a resample holds z 0-3 times: its accuracy is 0, or at least 98/100 (z with x and y once each)
    assert set(np.unique(accuracy)) <= {0.0} | set(accuracy[accuracy >= 98 / 100])
    assert (accuracy == 0).any()


def test_with_no_champion_the_floors_alone_decide():
    decision = decide(_evaluation(_noisy(0.9, 1)), None, PARAMS)
    assert decision.promote and "no champion yet" in " ".join(decision.reasons)


@pytest.mark.parametrize(("evaluation", "failed"), [
    (_evaluation(_noisy(0.3, 1), image=_noisy(0.2, 3), text=_noisy(0.2, 4)), "fused macro-F1"),
    (_evaluation(_noisy(0.9, 1), latency=500.0), "p95 latency"),
    (_evaluation(_noisy(0.65, 1), image=_noisy(0.9, 3)), "best single modality (image"),
])
def test_each_floor_refuses_on_its_own_and_says_which(evaluation, failed):
    decision = decide(evaluation, None, PARAMS)
    assert not decision.promote
    assert _failed(decision) == [next(r for r in decision.reasons if failed in r)]


def test_a_fused_model_between_its_modalities_is_refused_for_the_best_one():
    # text 0.9, image 0.5, fused 0.75: better than the worst, clearly worse than the best
    evaluation = _evaluation(_noisy(0.75, 1), image=_noisy(0.5, 3), text=_noisy(0.9, 4))
    decision = decide(evaluation, None, PARAMS)
    assert not decision.promote and "best single modality (text" in decision.summary
    assert decision.numbers["margin_high"] < 0


def test_the_margin_is_judged_by_its_interval_not_the_point_estimate():
    # fused and text err on different rows, fused a little less often: a positive point margin
    # that noise could as well have made negative
    params = PromoteParams(min_macro_f1=0.5, max_p95_latency_ms=100, bootstrap_resamples=500,
                           min_margin_over_best_modality=0.0)
    decision = decide(_evaluation(_noisy(0.86, 1), image=_noisy(0.5, 3), text=_noisy(0.85, 8)), None, params)
    assert decision.numbers["margin_over_best_modality"] > 0 > decision.numbers["margin_low"]
    assert not decision.promote and "best single modality (text" in decision.summary


def test_a_modality_is_scored_only_where_it_was_present():
    # image present on half the rows, right wherever present: absent rows must not count against it
    present = np.arange(400) < 200
    image = np.where(present, TARGET, UNKNOWN)
    decision = decide(_evaluation(_noisy(0.95, 1), image=image, text=_noisy(0.7, 8),
                                  present={"image": present}), None, PARAMS)
    assert decision.numbers["challenger_image_macro_f1"] == 1.0


def test_an_unknown_answer_of_a_present_modality_counts_against_it():
    image = TARGET.copy()
    image[:100] = UNKNOWN  # present, but answered a label outside the classes
    decision = decide(_evaluation(_noisy(0.95, 1), image=image, text=_noisy(0.7, 8)), None, PARAMS)
    assert decision.numbers["challenger_image_macro_f1"] < 0.9


def test_a_challenger_clearly_worse_than_the_champion_per_sample_is_refused():
    champion = _evaluation(_noisy(0.92, 1), version="1")
    decision = decide(_evaluation(_noisy(0.8, 2)), champion, PARAMS)
    assert not decision.promote and "vs champion v1" in decision.summary
    assert decision.numbers["difference_high"] < 0


def test_a_challenger_as_good_as_the_champion_is_promoted():
    predictions = _noisy(0.85, 1)
    decision = decide(_evaluation(predictions.copy()), _evaluation(predictions, version="1"), PARAMS)
    assert decision.promote and decision.numbers["difference"] == 0


def test_a_small_noisy_gap_is_judged_by_the_interval_not_the_bare_difference():
    # 2 of 400 answers differ: a bare difference says "worse", the paired interval says "not clearly"
    challenger, champion = _worse_by(2)
    decision = decide(_evaluation(challenger), _evaluation(champion, version="1"), PARAMS)
    assert decision.numbers["difference"] < 0 and decision.promote


def test_a_regression_within_tolerance_but_uncertain_beyond_it_is_refused():
    # the bare difference (-0.01) is within max_regression (0.02); the interval's lower end is not
    challenger, champion = _worse_by(4)
    decision = decide(_evaluation(challenger), _evaluation(champion, version="1"), PARAMS)
    assert -PARAMS.max_regression < decision.numbers["difference"] < 0
    assert decision.numbers["difference_low"] < -PARAMS.max_regression
    assert not decision.promote and "vs champion v1" in decision.summary


def test_the_regression_floor_holds_exactly_at_the_limit():
    challenger, champion = _worse_by(4)
    low = decide(_evaluation(challenger), _evaluation(champion, version="1"), PARAMS).numbers["difference_low"]
    at_limit = PromoteParams(**{**PARAMS.__dict__, "max_regression": -low})
    assert decide(_evaluation(challenger), _evaluation(champion, version="1"), at_limit).promote


def test_the_f1_floor_holds_exactly_at_the_limit():
    fused = _noisy(0.8, 1)
    score = macro_f1(TARGET, fused, 4)
    at = PromoteParams(**{**PARAMS.__dict__, "min_macro_f1": score})
    above = PromoteParams(**{**PARAMS.__dict__, "min_macro_f1": np.nextafter(score, 1)})
    assert decide(_evaluation(fused), None, at).promote
    assert not decide(_evaluation(fused), None, above).promote


def test_a_champion_with_other_classes_is_not_compared_and_both_lists_are_named():
    predictions = _noisy(0.85, 1)
    champion = _evaluation(predictions, version="1", classes=("a", "b", "c", "e"))
    decision = decide(_evaluation(predictions), champion, PARAMS)
    assert not decision.promote
    assert "['a', 'b', 'c', 'e']" in decision.summary and "['a', 'b', 'c', 'd']" in decision.summary
    assert "difference" not in decision.numbers


def test_the_champion_is_compared_only_on_the_rows_it_never_saw():
    # the champion memorised the first 200 rows; on the others it is no better than the challenger
    challenger = _noisy(0.8, 2)
    champion = np.where(np.arange(400) < 200, TARGET, challenger)
    unseen = np.arange(400) >= 200
    fair = decide(_evaluation(challenger), _evaluation(champion, version="1"), PARAMS, unseen=unseen)
    assert fair.promote and fair.numbers["compared_samples"] == 200 and fair.numbers["difference"] == 0
    assert "200 test rows left out" in " ".join(fair.reasons)
    assert not decide(_evaluation(challenger), _evaluation(champion, version="1"), PARAMS).promote


def test_too_few_unseen_rows_leave_the_decision_to_the_floors():
    challenger, champion = _noisy(0.8, 2), TARGET.copy()
    unseen = np.arange(400) >= 390
    decision = decide(_evaluation(challenger), _evaluation(champion, version="1"), PARAMS, unseen=unseen)
    assert decision.promote and "the floors alone decide" in " ".join(decision.reasons)
    assert "difference" not in decision.numbers


def test_champion_and_challenger_must_be_scored_on_the_same_samples():
    other = Evaluation("1", TARGET[::-1], TARGET, {}, 1.0, classes=CLASSES)
    with pytest.raises(ValueError, match="same samples"):
        decide(_evaluation(_noisy(0.9, 1)), other, PARAMS)


# -- shift sets: the fusion regret, and no large fall below the champion ------------------------

def _shift(fused, champion=None, unseen=None, **modalities):
    challenger = _evaluation(fused, **modalities)
    return ShiftEvaluation("twitter", challenger, _evaluation(champion, version="1") if champion is not None else None,
                           unseen)


def test_a_challenger_whose_fusion_loses_to_one_modality_under_shift_is_refused_naming_the_set():
    # in-domain it is fine; on the shift set the image is blind and fusion follows it below the text
    shift = _shift(_noisy(0.55, 1), image=_noisy(0.3, 3), text=_noisy(0.8, 4))
    decision = decide(_evaluation(_noisy(0.9, 1)), None, PARAMS, shifts=(shift,))
    assert not decision.promote
    assert _failed(decision) == [next(r for r in decision.reasons if "fusion regret" in r)]
    assert "shift set 'twitter'" in decision.summary and "(text alone minus fused) +0.1" in decision.summary
    assert decision.numbers["shift_twitter_regret"] > 0.1


def test_fusion_at_least_as_good_as_each_modality_under_shift_passes():
    shift = _shift(_noisy(0.85, 1), image=_noisy(0.5, 3), text=_noisy(0.8, 4))
    decision = decide(_evaluation(_noisy(0.9, 1)), None, PARAMS, shifts=(shift,))
    assert decision.promote and any("fusion regret" in r and r.startswith("pass") for r in decision.reasons)


def test_the_shift_regret_limit_holds_exactly_at_the_limit():
    # 400 rows: text right on 8 more rows than fused is a regret of exactly 0.02
    fused = _noisy(0.8, 1)
    text = fused.copy()
    fix = np.flatnonzero(fused != TARGET)[:8]
    text[fix] = TARGET[fix]
    at_limit = decide(_evaluation(_noisy(0.9, 1)), None, PromoteParams(**{**PARAMS.__dict__, "max_shift_regret": 0.02}),
                      shifts=(_shift(fused, image=_noisy(0.3, 3), text=text),))
    assert at_limit.promote, at_limit.summary


def test_a_challenger_far_below_the_champion_under_shift_is_refused():
    challenger, champion = _worse_by(20)  # 5 points of accuracy on 400 rows
    shift = _shift(challenger, champion=champion, image=_noisy(0.3, 3), text=_noisy(0.4, 4))
    decision = decide(_evaluation(_noisy(0.9, 1)), _evaluation(_noisy(0.9, 1), version="1"), PARAMS, shifts=(shift,))
    assert not decision.promote and "shift set 'twitter' vs champion v1" in decision.summary


def test_the_fall_below_the_champion_under_shift_is_judged_on_the_rows_it_never_saw():
    challenger, champion = _worse_by(20)
    seen = np.zeros(len(TARGET), bool)
    seen[np.flatnonzero(challenger != champion)] = True  # every differing row was the champion's training data
    shift = _shift(challenger, champion=champion, unseen=~seen, image=_noisy(0.3, 3), text=_noisy(0.4, 4))
    decision = decide(_evaluation(_noisy(0.9, 1)), _evaluation(_noisy(0.9, 1), version="1"), PARAMS, shifts=(shift,))
    assert decision.promote, decision.summary


def test_a_shift_set_that_could_not_be_read_is_named_and_not_judged():
    decision = decide(_evaluation(_noisy(0.9, 1)), None, PARAMS,
                      shifts=(ShiftEvaluation("mine", skipped="shift/mine/metadata.csv is absent"),))
    assert decision.promote and "shift set 'mine' not judged: shift/mine/metadata.csv is absent" in decision.reasons
