import numpy as np
import pytest
from sklearn.metrics import f1_score

from mmops.config import PromoteParams
from mmops.registry.gate import Evaluation, decide, macro_f1, paired_bootstrap

RNG = np.random.default_rng(0)
TARGET = RNG.integers(0, 4, 400)
PARAMS = PromoteParams(min_macro_f1=0.5, max_p95_latency_ms=100, max_regression=0.02, bootstrap_resamples=500)


def _noisy(accuracy: float, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    wrong = rng.random(len(TARGET)) > accuracy
    return np.where(wrong, (TARGET + rng.integers(1, 4, len(TARGET))) % 4, TARGET)


def _evaluation(fused, version="2", latency=20.0, **modalities) -> Evaluation:
    return Evaluation(version=version, target=TARGET, fused=fused,
                      modalities=modalities or {"image": _noisy(0.6, 7), "text": _noisy(0.7, 8)},
                      p95_latency_ms=latency)


def test_macro_f1_matches_sklearn_including_never_predicted_classes():
    predicted = _noisy(0.7, 1)
    predicted[predicted == 3] = 2  # class 3 never predicted
    expected = f1_score(TARGET, predicted, labels=range(5), average="macro", zero_division=0)
    assert macro_f1(TARGET, predicted, 5)[0] == pytest.approx(expected)


def test_the_paired_interval_is_tight_for_identical_models_and_excludes_zero_for_a_clear_gap():
    same = _noisy(0.8, 1)
    assert paired_bootstrap(TARGET, same, same, 4, resamples=300, seed=0) == (0.0, 0.0, 0.0)
    observed, low, high = paired_bootstrap(TARGET, _noisy(0.9, 1), _noisy(0.6, 2), 4, resamples=300, seed=0)
    assert 0 < low < observed < high


def test_with_no_champion_the_floors_alone_decide():
    decision = decide(_evaluation(_noisy(0.9, 1)), None, PARAMS, 4)
    assert decision.promote and "no champion yet" in " ".join(decision.reasons)


@pytest.mark.parametrize(("evaluation", "failed"), [
    (_evaluation(_noisy(0.3, 1), image=_noisy(0.2, 3), text=_noisy(0.2, 4)), "fused macro-F1"),
    (_evaluation(_noisy(0.9, 1), latency=500.0), "p95 latency"),
    (_evaluation(_noisy(0.65, 1), image=_noisy(0.9, 3)), "best single modality (image"),
])
def test_each_floor_refuses_on_its_own_and_says_which(evaluation, failed):
    decision = decide(evaluation, None, PARAMS, 4)
    assert not decision.promote
    assert [r for r in decision.reasons if r.startswith("FAIL")] == [
        next(r for r in decision.reasons if failed in r)]


def test_a_challenger_clearly_worse_than_the_champion_per_sample_is_refused():
    champion = _evaluation(_noisy(0.92, 1), version="1")
    decision = decide(_evaluation(_noisy(0.8, 2)), champion, PARAMS, 4)
    assert not decision.promote and "vs champion v1" in decision.summary
    assert decision.numbers["difference_high"] < 0


def test_a_challenger_as_good_as_the_champion_is_promoted():
    predictions = _noisy(0.85, 1)
    decision = decide(_evaluation(predictions.copy()), _evaluation(predictions, version="1"), PARAMS, 4)
    assert decision.promote and decision.numbers["difference"] == 0


def test_a_small_noisy_gap_is_judged_by_the_interval_not_the_bare_difference():
    # 2 of 400 answers differ: a bare difference says "worse", the paired interval says "not clearly"
    champion = _noisy(0.85, 1)
    challenger = champion.copy()
    flip = np.flatnonzero(challenger == TARGET)[:2]
    challenger[flip] = (TARGET[flip] + 1) % 4
    decision = decide(_evaluation(challenger), _evaluation(champion, version="1"), PARAMS, 4)
    assert decision.numbers["difference"] < 0 and decision.promote


def test_champion_and_challenger_must_be_scored_on_the_same_samples():
    other = Evaluation("1", TARGET[::-1], TARGET, {}, 1.0)
    with pytest.raises(ValueError, match="same samples"):
        decide(_evaluation(_noisy(0.9, 1)), other, PARAMS, 4)
