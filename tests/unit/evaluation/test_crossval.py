"""Grouped cross-validation folds: every row scored once, no group on two sides."""

import numpy as np
import pandas as pd
import pytest

from mmops.evaluation.crossval import grouped_folds


def _rows(n: int = 300, seed: int = 0):
    rng = np.random.default_rng(seed)
    groups = rng.integers(0, 120, n).astype(str)  # groups of 1 to ~7 rows
    target = rng.integers(0, 4, n)
    return target, groups


def test_every_row_is_scored_by_exactly_one_fold():
    target, groups = _rows()
    folds = grouped_folds(target, groups, 5)
    tested = np.concatenate([f.test for f in folds])
    assert len(folds) == 5 and sorted(tested.tolist()) == list(range(len(target)))


def test_no_group_is_on_two_sides_of_a_fold():
    target, groups = _rows()
    for fold in grouped_folds(target, groups, 5):
        sides = [set(groups[fold.train]), set(groups[fold.val]), set(groups[fold.test])]
        assert not (sides[0] & sides[1]) and not (sides[0] & sides[2]) and not (sides[1] & sides[2])
        assert len(fold.train) + len(fold.val) + len(fold.test) == len(target)


def test_the_validation_slice_is_about_a_sixth_of_the_rest():
    target, groups = _rows(600)
    for fold in grouped_folds(target, groups, 5):
        rest = len(fold.train) + len(fold.val)
        assert 0.10 < len(fold.val) / rest < 0.25


def test_the_same_seed_gives_the_same_folds_and_another_seed_others():
    target, groups = _rows()
    a, b, c = (grouped_folds(target, groups, 5, seed=s) for s in (0, 0, 1))
    assert all(np.array_equal(x.test, y.test) for x, y in zip(a, b))
    assert not all(np.array_equal(x.test, y.test) for x, y in zip(a, c))


def test_mismatched_group_labels_are_refused():
    with pytest.raises(ValueError, match="3 group labels for 4 rows"):
        grouped_folds(np.zeros(4), np.array(["a", "b", "c"]), 2)


def test_pooled_splits_keep_their_rows_in_order_and_take_picks_rows():
    import torch

    from mmops.evaluation.crossval import pool, take

    a = {"features": {"image": torch.arange(6.0).reshape(3, 2)}, "present": {"image": torch.tensor([True, False, True])},
         "target": torch.tensor([0, 1, 2])}
    b = {"features": {"image": torch.full((1, 2), 9.0)}, "present": {"image": torch.tensor([True])},
         "target": torch.tensor([3])}
    frame = pd.DataFrame({"sample_id": ["b0", "a0", "a1", "a2"], "split": ["val", "train", "train", "train"]})
    pooled, rows = pool({"train": a, "val": b}, frame, ("train", "val"))
    assert pooled["target"].tolist() == [0, 1, 2, 3] and pooled["features"]["image"][3].tolist() == [9.0, 9.0]
    assert rows["sample_id"].tolist() == ["a0", "a1", "a2", "b0"]
    picked = take(pooled, np.array([3, 1]))
    assert picked["target"].tolist() == [3, 1] and picked["present"]["image"].tolist() == [True, False]


def test_each_fold_tests_every_label_in_about_its_share():
    rng = np.random.default_rng(3)
    target = np.repeat(np.arange(3), [300, 150, 50])  # imbalanced labels
    groups = np.array([f"g{i // 2}" for i in range(len(target))])  # pairs of rows
    rng.shuffle(groups)
    shares = np.bincount(target) / len(target)
    for fold in grouped_folds(target, groups, 5):
        tested = np.bincount(target[fold.test], minlength=3) / len(fold.test)
        assert np.all(np.abs(tested - shares) < 0.05)
