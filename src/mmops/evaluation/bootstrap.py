"""Bootstrap intervals over a test split, resampling what the split assigned: whole groups.

The split puts every group (same file, near-duplicate image, family) on one side, so the rows
of a group are not independent draws: a row-level bootstrap treats 30 variants of one family
as 30 pieces of evidence and draws an interval that is too narrow. A cluster bootstrap draws
groups with replacement instead, each drawn group bringing all its rows (Davison & Hinkley,
"Bootstrap Methods and their Application", 1997, section 3.8).

Everything here works on per-group counts, so a resample costs a matrix product whatever the
number of rows: a resample is how many times each group was drawn (`Resampler.weights`), and
a score is computed from the true positives, false positives and false negatives those draws
add up to. Used by the gate (paired differences), the model card and evaluate alike.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

UNKNOWN = -1  # a predicted label outside the model's classes: always wrong, never dropped


def _counts(codes: np.ndarray, groups: int, target: np.ndarray, predicted: np.ndarray, rows: np.ndarray,
            num_classes: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per group and class: true positives, false positives, false negatives, over `rows`."""
    shape = (groups, num_classes)
    tp, fp, fn = np.zeros(shape), np.zeros(shape), np.zeros(shape)
    g, t, p = codes[rows], target[rows], predicted[rows]
    hit = p == t
    known = (p >= 0) & (p < num_classes)
    np.add.at(tp, (g[hit], t[hit]), 1)
    np.add.at(fn, (g[~hit], t[~hit]), 1)
    np.add.at(fp, (g[~hit & known], p[~hit & known]), 1)
    return tp, fp, fn


def _macro_f1(tp: np.ndarray, fp: np.ndarray, fn: np.ndarray) -> np.ndarray:
    """Macro-F1 over the last axis (an unpredicted, absent class counts 0, as in scikit-learn's
    `zero_division=0`)."""
    denominator = 2 * tp + fp + fn
    return np.mean(np.where(denominator > 0, 2 * tp / np.maximum(denominator, 1), 0.0), axis=-1)


def macro_f1(target: np.ndarray, predicted: np.ndarray, num_classes: int) -> float:
    """Macro-F1 over every class (an unpredicted class counts 0; an UNKNOWN answer is wrong)."""
    codes = np.zeros(len(target), dtype=int)
    tp, fp, fn = _counts(codes, 1, np.asarray(target), np.asarray(predicted), np.ones(len(target), bool),
                            num_classes)
    return float(_macro_f1(tp, fp, fn)[0])


@dataclass(frozen=True)
class Resampler:
    """A fixed set of cluster-bootstrap resamples of one test split: the group of each row
    (`codes`, 0..G-1) and, per resample, how many times each group was drawn (`weights`,
    resamples x G). Two models scored with one Resampler see the same resamples: paired."""

    codes: np.ndarray
    weights: np.ndarray

    @classmethod
    def of(cls, groups: Sequence[str] | np.ndarray | None, n: int, *, resamples: int, seed: int) -> Resampler:
        """Resamples of `n` rows whose groups are `groups` (None: every row its own group, the
        plain bootstrap). Each resample draws as many groups as there are, with replacement."""
        if groups is None:
            codes = np.arange(n)
        else:
            if len(groups) != n:
                raise ValueError(f"{len(groups)} group labels for {n} rows")
            _, codes = np.unique(np.asarray(groups, dtype=str), return_inverse=True)
        count = int(codes.max()) + 1 if n else 0
        weights = np.random.default_rng(seed).multinomial(count, np.full(count, 1 / max(count, 1)), size=resamples)
        return cls(codes=codes, weights=weights.astype(float))

    @property
    def groups(self) -> int:
        return self.weights.shape[1]

    def subset(self, rows: np.ndarray) -> Resampler:
        """The same resamples restricted to some rows (say, those where a modality was present):
        a group keeps its draws, it just brings fewer rows."""
        return Resampler(codes=self.codes[rows], weights=self.weights)

    def macro_f1(self, target: np.ndarray, predicted: np.ndarray, num_classes: int,
                 rows: np.ndarray | None = None) -> np.ndarray:
        """Macro-F1 in each resample (one value per resample), counting only `rows` (default all)."""
        rows = np.ones(len(target), bool) if rows is None else rows
        tp, fp, fn = _counts(self.codes, self.groups, target, predicted, rows, num_classes)
        return _macro_f1(self.weights @ tp, self.weights @ fp, self.weights @ fn)

    def accuracy(self, target: np.ndarray, predicted: np.ndarray) -> np.ndarray:
        """Accuracy in each resample."""
        sizes = np.bincount(self.codes, minlength=self.groups)
        correct = np.bincount(self.codes, weights=(target == predicted).astype(float), minlength=self.groups)
        return (self.weights @ correct) / np.maximum(self.weights @ sizes, 1)


def interval(values: np.ndarray) -> tuple[float, float]:
    """The 95% percentile interval of per-resample values."""
    low, high = np.percentile(values, [2.5, 97.5])
    return float(low), float(high)
