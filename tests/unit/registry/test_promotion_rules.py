"""The pure parts of promotion: which test rows a champion never saw, and how a refusal exits."""

import pandas as pd
import pytest

from mmops.config import ModalityParams
from mmops.modalities import build_modalities
from mmops.registry.promotion import unseen_rows

IMAGE = build_modalities([ModalityParams(name="image", column="image", encoder="efficientnet-lite0")])


def _frame(rows: list[dict[str, str]]) -> pd.DataFrame:
    base = {"sample_id": "", "image_sha256": "", "family": "", "image_phash": "", "group": ""}
    return pd.DataFrame([{**base, **row} for row in rows])


TEST = _frame([
    {"sample_id": "t1", "image_sha256": "h1", "family": "cat", "image_phash": "00" * 32, "group": "g1"},
    {"sample_id": "t2", "image_sha256": "h2", "family": "dog", "image_phash": "ff" * 32, "group": "g2"},
    {"sample_id": "t3", "image_sha256": "h3", "family": "dog", "image_phash": "f0" * 32, "group": "g2"},
    {"sample_id": "t4", "image_sha256": "h4", "family": "owl", "image_phash": "0f" * 32, "group": "g4"},
])


@pytest.mark.parametrize(("seen", "why"), [
    ({"sample_id": "t2"}, "the same id"),
    ({"image_sha256": "h3"}, "the same file"),
    ({"family": "dog"}, "the same family"),
    ({"image_phash": "ff" * 31 + "fe"}, "a near-duplicate image (1 bit apart)"),
])
def test_one_link_to_the_champions_training_rows_removes_the_whole_group(seen, why):
    unseen = unseen_rows(TEST, _frame([{"sample_id": "x", "image_sha256": "hx", **seen}]), IMAGE, 15)
    assert unseen.tolist() == [True, False, False, True], why


def test_a_champion_trained_on_other_rows_saw_nothing_of_the_test_split():
    other = _frame([{"sample_id": "x", "image_sha256": "hx", "family": "fox", "image_phash": "3c" * 32}])
    assert unseen_rows(TEST, other, IMAGE, 15).all()


def test_empty_values_link_nothing():
    test = TEST.assign(family="", image_sha256="")
    assert unseen_rows(test, _frame([{"sample_id": "x", "image_phash": "3c" * 32}]), IMAGE, 15).all()


def test_a_refused_promotion_exits_with_its_own_code(monkeypatch, capsys):
    from mmops import stages
    from mmops.cli import EXIT_REFUSED, main

    outcome = {"action": "refuse", "challenger": "3", "champion_before": "2", "champion_after": "2",
               "run_id": "r", "checks": ["FAIL: fused macro-F1 0.500 >= floor 0.750"], "numbers": {}}
    monkeypatch.setattr(stages, "promote", lambda params: outcome)
    monkeypatch.setattr("mmops.cli.load_params", lambda path: None)
    assert main(["promote"]) == EXIT_REFUSED not in (0, 1, 2)
    assert "REFUSED" in capsys.readouterr().out
    monkeypatch.setattr(stages, "promote", lambda params: {**outcome, "action": "promote", "champion_after": "3"})
    assert main(["promote"]) == 0
