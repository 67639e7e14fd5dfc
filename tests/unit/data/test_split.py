import dataclasses

import pandas as pd
import pytest
import torch

from mmops import stages
from mmops.artifacts import save_torch
from mmops.config import Layout, SplitParams
from mmops.data.split import assign_splits, split_of

IDS = [f"id-{i}" for i in range(3000)]


def _frame(keys: list[str]) -> pd.DataFrame:
    return pd.DataFrame({"sample_id": keys, "content_hash": [f"hash-{k}" for k in keys]})


def test_split_is_stable_when_rows_are_added():
    params = SplitParams()
    before = assign_splits(_frame(IDS[:2000]), params)
    after = assign_splits(_frame(IDS[2500:] + IDS), params)
    merged = before.merge(after.drop_duplicates("sample_id"), on="sample_id", suffixes=("_before", "_after"))
    assert len(merged) == 2000
    assert (merged["split_before"] == merged["split_after"]).all()


def test_split_does_not_depend_on_row_order():
    params = SplitParams()
    forward = assign_splits(_frame(IDS), params)
    backward = assign_splits(_frame(IDS[::-1]), params)
    assert dict(zip(forward["sample_id"], forward["split"])) == dict(zip(backward["sample_id"], backward["split"]))


def test_split_fractions_follow_params():
    counts = pd.Series([split_of(i, SplitParams(val_fraction=0.2, test_fraction=0.1)) for i in IDS]).value_counts()
    assert abs(counts["val"] / len(IDS) - 0.2) < 0.03
    assert abs(counts["test"] / len(IDS) - 0.1) < 0.03


def test_identical_images_never_straddle_splits():
    frame = pd.DataFrame({"sample_id": IDS, "content_hash": [f"h{i % 40}" for i in range(len(IDS))]})
    splits = assign_splits(frame, SplitParams())
    assert (splits.groupby("content_hash")["split"].nunique() == 1).all()
    assert splits["split"].nunique() == 3


def test_changing_the_salt_reshuffles():
    a = [split_of(i, SplitParams(salt="a")) for i in IDS[:300]]
    b = [split_of(i, SplitParams(salt="b")) for i in IDS[:300]]
    assert a != b



def test_training_on_an_empty_split_stops_naming_it(tiny_params, tmp_path):
    params = dataclasses.replace(tiny_params, split=SplitParams(test_fraction=0.0))
    layout = Layout(tmp_path / "artifacts")
    stages.clean(params, layout)
    counts = stages.split(params, layout)
    assert counts["test"] == 0
    ids = list(pd.read_csv(layout.split_manifest, dtype=str)["sample_id"])
    save_torch(layout.features, {"sample_id": ids, "image": torch.zeros(6, 4), "text": torch.zeros(6, 3)})
    with pytest.raises(ValueError, match=r"the '(\w+)' split is empty") as err:
        stages.train(params, layout)
    named = err.value.args[0].split("the '")[1].split("'")[0]
    assert counts[named] == 0
