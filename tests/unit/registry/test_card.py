"""The model card: scores with intervals, per-class table, pictures inlined, the gate's decision."""

import re

import numpy as np
import pandas as pd
import pytest

from mmops.registry.card import CardInputs, bootstrap_scores, render

CLASSES = ["Flags", "Objects", "Symbols"]


def _inputs(tags=None) -> CardInputs:
    rng = np.random.default_rng(0)
    labels = [CLASSES[i % 3] for i in range(60)]
    noisy = [label if rng.random() < 0.8 else CLASSES[0] for label in labels]
    predictions = pd.DataFrame({"sample_id": [f"s{i}" for i in range(60)], "label": labels,
                                "pred_image": noisy, "pred_text": labels, "pred_fused": labels})
    predictions.loc[0, "pred_fused"] = "Symbols"
    history = pd.DataFrame({"epoch": [1, 2, 3], "train_loss": [1.0, 0.5, 0.3], "val_loss": [0.9, 0.6, 0.7],
                            "val_acc": [0.5, 0.7, 0.68]})
    split = pd.DataFrame({"split": ["train"] * 100 + ["val"] * 20 + ["test"] * 60})
    params = {"train.fusion": "late", "modalities": "{'name': 'image', 'encoder': 'efficientnet-lite0'},"
                                                    "{'name': 'text', 'encoder': 'all-minilm-l6-v2'}"}
    return CardInputs(name="m", version="7", run_id="r1", predictions=predictions, history=history, split=split,
                      params=params, tags={"mmops.data_md5": "abc.dir", **(tags or {})}, classes=CLASSES)


def test_bootstrap_intervals_hold_the_observed_score_and_are_reproducible():
    target = np.array([0, 1, 2] * 20)
    predicted = target.copy()
    predicted[:12] = 0
    scores = bootstrap_scores(target, predicted, 3)
    accuracy, low, high = scores["accuracy"]
    assert accuracy == pytest.approx((predicted == target).mean())
    assert low < accuracy < high
    assert bootstrap_scores(target, predicted, 3) == scores


def test_the_card_shows_each_models_scores_with_intervals_and_a_per_class_table():
    page = render(_inputs())
    assert "image (efficientnet-lite0), text (all-minilm-l6-v2)" in page
    assert re.search(r"<td>fused</td>\s*<td>60</td>\s*<td>0\.983 \[0\.950, 1\.000\]</td>", page)
    for name in ("image", "text", *CLASSES):
        assert f"<td>{name}</td>" in page
    assert "100 train, 20 validation,\n60 test" in page and "abc.dir" in page


def test_the_card_reads_offline_its_pictures_inlined():
    page = render(_inputs())
    assert page.count('src="data:image/png;base64,') == 2  # confusion matrix, training curves
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", page)


def test_the_card_draws_a_reliability_diagram_from_the_logged_confidences():
    from mmops.registry.card import pictures

    inputs = _inputs()
    assert "reliability.png" not in pictures(inputs)  # an older version logged no confidence
    confident = inputs.predictions.assign(**{f"confidence_{m}": 0.9 for m in ("image", "text", "fused")})
    with_confidence = CardInputs(**{**inputs.__dict__, "predictions": confident})
    drawn = pictures(with_confidence)
    assert drawn["reliability.png"].startswith(b"\x89PNG")
    page = render(with_confidence, drawn)
    assert page.count('src="data:image/png;base64,') == 3 and "Calibration (test)" in page
    assert "F1, image only" in page and "F1, text only" in page


def test_the_card_shows_the_gates_decision_once_made():
    assert "Not decided yet" in render(_inputs())
    decided = render(_inputs({"mmops.gate.decision": "refuse", "mmops.gate.reason": "fused macro-F1 0.61 < 0.75"}))
    assert "<b>refuse</b>: fused macro-F1 0.61 &lt; 0.75" in decided


def test_the_cards_intervals_resample_the_splits_groups():
    inputs = _inputs()
    # the first 30 test rows are one group (a family): resampled together, the interval widens
    split = pd.DataFrame({"sample_id": inputs.predictions["sample_id"], "split": "test",
                          "group": ["family"] * 30 + [f"g{i}" for i in range(30)]})
    grouped = render(CardInputs(**{**inputs.__dict__, "split": split}))
    assert "the split&#39;s groups of samples" in grouped and "the split&#39;s groups" not in render(inputs)
    target = np.array([0, 1, 2] * 20)
    predicted = np.where(np.arange(60) < 30, (target + 1) % 3, target)  # the family all wrong
    by_rows = bootstrap_scores(target, predicted, 3)["accuracy"]
    by_groups = bootstrap_scores(target, predicted, 3, split["group"].to_numpy())["accuracy"]
    assert by_groups[2] - by_groups[1] > 2 * (by_rows[2] - by_rows[1])


def test_the_card_shows_each_shift_sets_scores_and_regret_and_names_a_skipped_set():
    scored = {"samples": 40, "regret": -0.05, "models": {
        "image": {"accuracy": 0.55, "macro_f1": 0.5, "ece": 0.12, "samples": 40},
        "fused": {"accuracy": 0.875, "macro_f1": 0.8, "ece": 0.07, "samples": 40}}}
    shift = {"twitter": {"all": {**scored, "samples": 300}, "test_ids": scored}, "mine": {"skipped": "x.csv is absent"}}
    page = render(CardInputs(**{**_inputs().__dict__, "shift": shift}))
    section = page[page.index("<h2>Under shift</h2>"):page.index("<h2>Training curves</h2>")]
    assert "ids (40)" in section and "all rows (300)" in section
    assert "0.875" in section and "-0.050" in section and "mine: x.csv is absent" in section


def test_a_card_without_shift_scores_says_they_were_not_measured():
    page = render(_inputs())
    assert "Not measured" in page[page.index("<h2>Under shift</h2>"):]
