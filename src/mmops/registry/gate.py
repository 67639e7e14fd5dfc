"""The champion/challenger decision: absolute floors, then a paired, per-sample comparison.
Pure functions over per-sample predictions; the MLflow side is in `registry.promotion`."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from mmops.config import PromoteParams


@dataclass(frozen=True)
class Evaluation:
    """One model version scored on the held-out split: per-sample predicted class indices for
    the fused model and each modality alone (-1 where that modality was absent), and the p95
    latency of a one-record prediction."""

    version: str
    target: np.ndarray
    fused: np.ndarray
    modalities: dict[str, np.ndarray]
    p95_latency_ms: float


@dataclass(frozen=True)
class Decision:
    promote: bool
    reasons: list[str]  # every check, passed or not, in words
    numbers: dict[str, float] = field(default_factory=dict)

    @property
    def summary(self) -> str:
        failed = [r for r in self.reasons if r.startswith("FAIL")]
        return "; ".join(failed) if failed else "passed every check"


def macro_f1(target: np.ndarray, predicted: np.ndarray, num_classes: int) -> np.ndarray:
    """Macro-F1 over every class (an unpredicted class counts 0), for each row of 2-D inputs
    (one resample per row) or for a single 1-D pair."""
    target, predicted = np.atleast_2d(target), np.atleast_2d(predicted)
    scores = []
    for c in range(num_classes):
        tp = ((predicted == c) & (target == c)).sum(1)
        fp = ((predicted == c) & (target != c)).sum(1)
        fn = ((predicted != c) & (target == c)).sum(1)
        denominator = 2 * tp + fp + fn
        scores.append(np.where(denominator > 0, 2 * tp / np.maximum(denominator, 1), 0.0))
    return np.mean(scores, axis=0)


def resamples_of(n: int, resamples: int, seed: int) -> np.ndarray:
    """Bootstrap resamples of `n` samples, one row of indices per resample (drawn with replacement)."""
    return np.random.default_rng(seed).integers(0, n, size=(resamples, n))


def paired_bootstrap(target: np.ndarray, a: np.ndarray, b: np.ndarray, num_classes: int, *,
                     resamples: int, seed: int) -> tuple[float, float, float]:
    """Macro-F1 of `a` minus that of `b` on the same samples: the observed difference and a 95%
    interval from resampling the samples (both models see the same resample each time)."""
    index = resamples_of(len(target), resamples, seed)
    diffs = macro_f1(target[index], a[index], num_classes) - macro_f1(target[index], b[index], num_classes)
    observed = float(macro_f1(target, a, num_classes)[0] - macro_f1(target, b, num_classes)[0])
    low, high = np.percentile(diffs, [2.5, 97.5])
    return observed, float(low), float(high)


def _modality_f1(evaluation: Evaluation, name: str, num_classes: int) -> float:
    rows = evaluation.modalities[name] >= 0
    return float(macro_f1(evaluation.target[rows], evaluation.modalities[name][rows], num_classes)[0])


def decide(challenger: Evaluation, champion: Evaluation | None, params: PromoteParams, num_classes: int) -> Decision:
    """Promote only when the challenger passes every floor and, if there is a champion, is not
    worse than it beyond `params.max_regression` (the lower end of the paired 95% interval of
    the macro-F1 difference). With no champion, the floors alone decide."""
    reasons: list[str] = []
    numbers: dict[str, Any] = {}

    def check(ok: bool, text: str) -> None:
        reasons.append(f"{'pass' if ok else 'FAIL'}: {text}")

    fused = float(macro_f1(challenger.target, challenger.fused, num_classes)[0])
    singles = {m: _modality_f1(challenger, m, num_classes) for m in challenger.modalities}
    best = max(singles, key=singles.get) if singles else None
    margin = fused - singles[best] if best else 0.0
    numbers.update({"challenger_macro_f1": fused, "challenger_p95_latency_ms": challenger.p95_latency_ms,
                    "margin_over_best_modality": margin,
                    **{f"challenger_{m}_macro_f1": f for m, f in singles.items()}})
    check(fused >= params.min_macro_f1, f"fused macro-F1 {fused:.3f} >= floor {params.min_macro_f1:.3f}")
    if best:
        check(margin >= params.min_margin_over_best_modality,
              f"fused beats the best single modality ({best}, {singles[best]:.3f}) by {margin:+.3f} "
              f">= {params.min_margin_over_best_modality:+.3f}")
    check(challenger.p95_latency_ms <= params.max_p95_latency_ms,
          f"p95 latency of one record {challenger.p95_latency_ms:.1f} ms <= {params.max_p95_latency_ms:.0f} ms")
    if champion is None:
        reasons.append("no champion yet: the floors alone decide")
    else:
        if not np.array_equal(champion.target, challenger.target):
            raise ValueError("champion and challenger were not scored on the same samples")
        observed, low, high = paired_bootstrap(challenger.target, challenger.fused, champion.fused, num_classes,
                                               resamples=params.bootstrap_resamples, seed=params.seed)
        numbers.update({"champion_macro_f1": float(macro_f1(champion.target, champion.fused, num_classes)[0]),
                        "difference": observed, "difference_low": low, "difference_high": high})
        check(low >= -params.max_regression,
              f"vs champion v{champion.version}: macro-F1 difference {observed:+.3f}, paired 95% interval "
              f"[{low:+.3f}, {high:+.3f}], lower end >= -{params.max_regression:.3f}")
    return Decision(promote=not any(r.startswith("FAIL") for r in reasons), reasons=reasons, numbers=numbers)
