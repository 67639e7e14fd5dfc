"""The champion/challenger decision: absolute floors, then a paired comparison whose intervals
resample the test split's groups, then the shift sets (fusion regret, and no large fall below the
champion). Pure functions over per-sample predictions; the MLflow side is in `registry.promotion`."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from mmops.config import PromoteParams
from mmops.evaluation.bootstrap import UNKNOWN, Resampler, interval, macro_f1
from mmops.evaluation.shift import fusion_regret

__all__ = ["UNKNOWN", "Decision", "Evaluation", "ShiftEvaluation", "decide", "macro_f1", "paired_bootstrap"]


@dataclass(frozen=True)
class Evaluation:
    """One model version scored on the held-out split: its classes, per-sample predicted class
    indices for the fused model and each modality alone (UNKNOWN where it answered a label
    outside the classes; both models of a comparison are indexed in the challenger's order),
    the rows where each modality was present (it is scored alone only
    there; a modality missing from `present` was present everywhere), and the p95 latency of a
    one-record prediction."""

    version: str
    target: np.ndarray
    fused: np.ndarray
    modalities: dict[str, np.ndarray]
    p95_latency_ms: float
    classes: tuple[str, ...] = ()
    present: dict[str, np.ndarray] = field(default_factory=dict)

    def rows_of(self, modality: str) -> np.ndarray:
        """The rows where `modality` was present."""
        return self.present.get(modality, np.ones(len(self.target), bool))


@dataclass(frozen=True)
class ShiftEvaluation:
    """Challenger (and champion, when there is one) scored on a shift set's rows whose ids are in
    the challenger's test split; `unseen` marks those the champion never trained or validated on
    (None: all). A set that could not be read has `skipped`, its reason, and no scores."""

    name: str
    challenger: Evaluation | None = None
    champion: Evaluation | None = None
    unseen: np.ndarray | None = None
    skipped: str = ""


@dataclass(frozen=True)
class Decision:
    promote: bool
    reasons: list[str]  # every check, passed or not, in words
    numbers: dict[str, float] = field(default_factory=dict)

    @property
    def summary(self) -> str:
        failed = [r for r in self.reasons if r.startswith("FAIL")]
        return "; ".join(failed) if failed else "passed every check"


def paired_bootstrap(resampler: Resampler, target: np.ndarray, a: np.ndarray, b: np.ndarray, num_classes: int,
                     rows: np.ndarray | None = None) -> tuple[float, float, float]:
    """Macro-F1 of `a` minus that of `b` on the same rows (default all): the observed difference
    and a 95% interval from the resampler's resamples (both models see the same resample)."""
    rows = np.ones(len(target), bool) if rows is None else rows
    diffs = resampler.macro_f1(target, a, num_classes, rows) - resampler.macro_f1(target, b, num_classes, rows)
    observed = macro_f1(target[rows], a[rows], num_classes) - macro_f1(target[rows], b[rows], num_classes)
    return (float(observed), *interval(diffs))


def decide(challenger: Evaluation, champion: Evaluation | None, params: PromoteParams, *,
           groups: np.ndarray | None = None, unseen: np.ndarray | None = None,
           shifts: tuple[ShiftEvaluation, ...] = ()) -> Decision:
    """Promote only when the challenger passes every floor and, if there is a champion, is not
    worse than it beyond `params.max_regression` (the lower end of the paired 95% interval of
    the macro-F1 difference). With no champion, the floors alone decide.

    Intervals resample `groups` (the split's group of each test row; None: each row alone).
    `unseen` marks the test rows the champion never trained or validated on: the comparison
    uses those only, and with fewer than `params.min_comparison_samples` of them (or a champion
    trained on other classes) there is no fair comparison, which the reasons say.

    Each of `shifts` must have a fusion regret of at most `params.max_shift_regret`, and a fused
    accuracy at most `params.max_shift_drop` below the champion's on the rows it never saw."""
    reasons: list[str] = []
    numbers: dict[str, Any] = {}

    def check(ok: bool, text: str) -> None:
        reasons.append(f"{'pass' if ok else 'FAIL'}: {text}")

    target, num_classes = challenger.target, len(challenger.classes)
    resampler = Resampler.of(groups, len(target), resamples=params.bootstrap_resamples, seed=params.seed)
    numbers["test_groups"] = resampler.groups
    fused = macro_f1(target, challenger.fused, num_classes)
    numbers.update({"challenger_macro_f1": fused, "challenger_p95_latency_ms": challenger.p95_latency_ms})
    check(fused >= params.min_macro_f1, f"fused macro-F1 {fused:.3f} >= floor {params.min_macro_f1:.3f}")
    if challenger.modalities:
        reasons.append(_margin(challenger, resampler, params, numbers))
    check(challenger.p95_latency_ms <= params.max_p95_latency_ms,
          f"p95 latency of one record {challenger.p95_latency_ms:.1f} ms <= {params.max_p95_latency_ms:.0f} ms")
    for shift in shifts:
        _judge_shift(shift, params, reasons, numbers)
    if champion is None:
        reasons.append("no champion yet: the floors alone decide")
        return Decision(promote=not any(r.startswith("FAIL") for r in reasons), reasons=reasons, numbers=numbers)
    if sorted(champion.classes) != sorted(challenger.classes):
        check(False, f"champion v{champion.version} was trained on the classes {list(champion.classes)}, the "
                     f"challenger on {list(challenger.classes)}: no comparison between different class lists "
                     "(if the new classes are intended: review it, delete the champion alias in the registry, and "
                     "`mmops promote` judges it on the floors alone)")
        return Decision(promote=False, reasons=reasons, numbers=numbers)
    if not np.array_equal(champion.target, target):
        raise ValueError("champion and challenger were not scored on the same samples")
    rows = np.ones(len(target), bool) if unseen is None else np.asarray(unseen, bool)
    numbers.update({"compared_samples": int(rows.sum()), "champion_seen_samples": int((~rows).sum())})
    seen = f" ({int((~rows).sum())} test rows left out: champion v{champion.version} trained or validated on their groups)" \
        if (~rows).any() else ""
    if rows.sum() < params.min_comparison_samples:
        reasons.append(f"vs champion v{champion.version}: only {int(rows.sum())} test rows it never saw"
                       f"{seen}, fewer than {params.min_comparison_samples}: no fair comparison, "
                       "the floors alone decide")
        return Decision(promote=not any(r.startswith("FAIL") for r in reasons), reasons=reasons, numbers=numbers)
    observed, low, high = paired_bootstrap(resampler, target, challenger.fused, champion.fused, num_classes, rows)
    numbers.update({"champion_macro_f1": macro_f1(target[rows], champion.fused[rows], num_classes),
                    "difference": observed, "difference_low": low, "difference_high": high})
    check(low >= -params.max_regression,
          f"vs champion v{champion.version} on {int(rows.sum())} test rows{seen}: macro-F1 difference "
          f"{observed:+.3f}, paired 95% interval [{low:+.3f}, {high:+.3f}], lower end >= -{params.max_regression:.3f}")
    return Decision(promote=not any(r.startswith("FAIL") for r in reasons), reasons=reasons, numbers=numbers)


def _margin(challenger: Evaluation, resampler: Resampler, params: PromoteParams, numbers: dict[str, Any]) -> str:
    """Does fusion earn its place? Fused minus the best single modality, in each resample (the
    best may differ between resamples): the lower end of that interval must reach the margin."""
    target, num_classes = challenger.target, len(challenger.classes)
    singles = {m: macro_f1(target[challenger.rows_of(m)], p[challenger.rows_of(m)], num_classes)
               for m, p in challenger.modalities.items()}
    best = max(singles, key=singles.get)
    per_resample = np.stack([resampler.macro_f1(target, p, num_classes, challenger.rows_of(m))
                             for m, p in challenger.modalities.items()])
    fused = resampler.macro_f1(target, challenger.fused, num_classes)
    margins = fused - per_resample.max(axis=0)
    margin = macro_f1(target, challenger.fused, num_classes) - singles[best]
    low, high = interval(margins)
    numbers.update({"margin_over_best_modality": margin, "margin_low": low, "margin_high": high,
                    **{f"challenger_{m}_macro_f1": f for m, f in singles.items()}})
    ok = low >= params.min_margin_over_best_modality
    return (f"{'pass' if ok else 'FAIL'}: fused beats the best single modality ({best}, {singles[best]:.3f}) by "
            f"{margin:+.3f}, paired 95% interval [{low:+.3f}, {high:+.3f}], lower end >= "
            f"{params.min_margin_over_best_modality:+.3f}")


def _judge_shift(shift: ShiftEvaluation, params: PromoteParams, reasons: list[str], numbers: dict[str, Any]) -> None:
    """The checks on one shift set, as point scores on its rows (a few hundred, as listed): the
    fusion regret, then the fall below the champion."""
    name = shift.name
    if shift.challenger is None:
        reasons.append(f"shift set '{name}' not judged: {shift.skipped}")
        return
    ev = shift.challenger
    target, n = ev.target, len(ev.target)
    fused_accuracy = float((ev.fused == target).mean())
    regret = fusion_regret(target, ev.fused, ev.modalities, ev.present, len(ev.classes))
    numbers[f"shift_{name}_accuracy"] = fused_accuracy
    if regret:
        numbers[f"shift_{name}_regret"] = regret["regret"]
        ok = regret["regret"] <= params.max_shift_regret
        reasons.append(f"{'pass' if ok else 'FAIL'}: shift set '{name}' ({n} rows of the test split's ids): fused "
                       f"accuracy {fused_accuracy:.3f}, fusion regret ({regret['regret_modality']} alone minus fused) "
                       f"{regret['regret']:+.3f} <= {params.max_shift_regret:+.3f}")
    if shift.champion is None:
        return
    rows = np.ones(n, bool) if shift.unseen is None else np.asarray(shift.unseen, bool)
    if rows.sum() < params.min_comparison_samples:
        reasons.append(f"shift set '{name}' vs champion v{shift.champion.version}: only {int(rows.sum())} rows it "
                       f"never saw, fewer than {params.min_comparison_samples}: not compared")
        return
    ours = float((ev.fused[rows] == target[rows]).mean())
    theirs = float((shift.champion.fused[rows] == target[rows]).mean())
    numbers[f"shift_{name}_champion_accuracy"] = theirs
    ok = ours - theirs >= -params.max_shift_drop
    reasons.append(f"{'pass' if ok else 'FAIL'}: shift set '{name}' vs champion v{shift.champion.version} on "
                   f"{int(rows.sum())} rows: fused accuracy {ours:.3f} against {theirs:.3f}, difference "
                   f"{ours - theirs:+.3f} >= -{params.max_shift_drop:.3f}")
