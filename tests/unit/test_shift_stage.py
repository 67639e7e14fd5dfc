"""The shift stage: the trained model scored on a labelled set drawn another way."""

import json
import logging

import pandas as pd
import pytest

from mmops import artifacts, stages
from mmops.config import ShiftParams
from tests.conftest import TINY_LABELS, write_manifest, write_png
from tests.unit.test_stages import crafted  # noqa: F401  (the fixture: a split, a feature cache)


def _with_sets(params, **sets):
    import dataclasses

    return dataclasses.replace(params, shift=ShiftParams(sets={k: str(v) for k, v in sets.items()}))


def _shift_set(folder, ids, labels, split):
    """Another drawing of some of the split's samples (plus a row of a class the model lacks)."""
    rows = []
    for i, (s, label) in enumerate(zip(ids, labels)):
        if i % 6 == 0:  # every sixth sample, whatever its split
            write_png(folder / "art" / f"{s}.png", (200, (i * 37) % 256, 30, 255), size=24)
            rows.append({"sample_id": s, "image": f"art/{s}.png", "text": f"thing {s}", "label": label})
    write_png(folder / "art" / "odd.png", (9, 9, 9, 255))
    rows.append({"sample_id": "odd", "image": "art/odd.png", "text": "an odd one", "label": "Smileys & Emotion"})
    write_manifest(folder / "metadata.csv", rows)
    return [r["sample_id"] for r in rows[:-1]]


def test_shift_scores_fused_and_each_modality_on_all_rows_and_on_the_test_splits_ids(crafted, tmp_path):  # noqa: F811
    params, layout, ids, labels = crafted
    kept = _shift_set(tmp_path / "other", ids, labels, None)
    params = _with_sets(params, other=tmp_path / "other" / "metadata.csv")
    stages.train(params, layout, device="cpu")
    report = stages.shift(params, layout)["other"]
    split = artifacts.read_csv(layout.split_manifest).set_index("sample_id")["split"]
    assert report["rows"] == len(kept) + 1 and report["rejected"] == 1
    assert report["rejects_by_reason"] == {"unknown label": 1}
    assert report["all"]["samples"] == len(kept)
    assert report["test_ids"]["samples"] == sum(split[s] == "test" for s in kept) > 0
    assert set(report["all"]["models"]) == {"fused", "image", "text"}
    assert {"regret", "regret_macro_f1", "regret_modality"} <= set(report["test_ids"])
    scores = pd.read_csv(layout.shift_scores)
    fused_test = scores[(scores["rows"] == "test_ids") & (scores["model"] == "fused")].iloc[0]
    assert fused_test["accuracy"] == pytest.approx(report["test_ids"]["models"]["fused"]["accuracy"], abs=1e-4)
    assert json.loads(layout.shift_metrics.read_text())["sets"]["other"]["all"] == report["all"]


def test_an_absent_shift_set_is_skipped_with_a_message_and_the_others_still_run(crafted, tmp_path, caplog):  # noqa: F811
    params, layout, ids, labels = crafted
    _shift_set(tmp_path / "other", ids, labels, None)
    params = _with_sets(params, gone=tmp_path / "nowhere" / "metadata.csv", other=tmp_path / "other" / "metadata.csv")
    stages.train(params, layout, device="cpu")
    with caplog.at_level(logging.WARNING):
        report = stages.shift(params, layout)
    assert "absent" in report["gone"]["skipped"] and "samples" in report["other"]["all"]
    assert "set 'gone' skipped" in caplog.text and "nowhere" in caplog.text


def test_the_shift_sets_manifests_are_read_relative_to_params_yaml(tmp_path):
    from tests.conftest import repo_params
    from mmops.config import params_from_dict

    raw = repo_params(data={"root": str(tmp_path / "data"), "manifest": str(tmp_path / "data" / "metadata.csv"),
                            "labels": TINY_LABELS})
    raw["shift"] = {"sets": {"twitter": "shift/twitter/metadata.csv"}}
    params = params_from_dict(raw, base=tmp_path)
    assert params.shift.sets == {"twitter": str(tmp_path / "shift" / "twitter" / "metadata.csv")}
