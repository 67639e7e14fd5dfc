import dataclasses

import pandas as pd
import pytest
import torch

from mmops import stages
from mmops.features.cache import FeatureCache
from mmops.models.fusion import all_present
from mmops.config import Layout, SplitParams
from mmops.data.split import assign_splits, group_keys, split_of

IDS = [f"id-{i}" for i in range(3000)]


KEYS = ["image_sha256"]


def _frame(keys: list[str]) -> pd.DataFrame:
    return pd.DataFrame({"sample_id": keys, "image_sha256": [f"hash-{k}" for k in keys]})


def test_split_is_stable_when_rows_are_added():
    params = SplitParams()
    before = assign_splits(_frame(IDS[:2000]), params, KEYS)
    after = assign_splits(_frame(IDS[2500:] + IDS), params, KEYS)
    merged = before.merge(after.drop_duplicates("sample_id"), on="sample_id", suffixes=("_before", "_after"))
    assert len(merged) == 2000
    assert (merged["split_before"] == merged["split_after"]).all()


def test_split_does_not_depend_on_row_order():
    params = SplitParams()
    forward = assign_splits(_frame(IDS), params, KEYS)
    backward = assign_splits(_frame(IDS[::-1]), params, KEYS)
    assert dict(zip(forward["sample_id"], forward["split"])) == dict(zip(backward["sample_id"], backward["split"]))


def test_split_fractions_follow_params():
    counts = pd.Series([split_of(i, SplitParams(val_fraction=0.2, test_fraction=0.1)) for i in IDS]).value_counts()
    assert abs(counts["val"] / len(IDS) - 0.2) < 0.03
    assert abs(counts["test"] / len(IDS) - 0.1) < 0.03


def test_identical_images_never_straddle_splits():
    frame = pd.DataFrame({"sample_id": IDS, "image_sha256": [f"h{i % 40}" for i in range(len(IDS))]})
    splits = assign_splits(frame, SplitParams(), KEYS)
    assert (splits.groupby("image_sha256")["split"].nunique() == 1).all()
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
    features = {"image": torch.zeros(6, 4), "text": torch.zeros(6, 3)}
    FeatureCache(ids, features, all_present(features), encoders={}).save(layout.features)
    with pytest.raises(ValueError, match=r"the '(\w+)' split is empty") as err:
        stages.train(params, layout)
    named = err.value.args[0].split("the '")[1].split("'")[0]
    assert counts[named] == 0


def test_rows_sharing_any_media_file_are_one_group():
    # a and b share an image, b and c share an audio file: all three are one group
    frame = pd.DataFrame({"sample_id": ["a", "b", "c", "d"], "image_sha256": ["i1", "i1", "i2", "i3"],
                          "audio_sha256": ["u1", "u2", "u2", "u3"]})
    keys = group_keys(frame, ["image_sha256", "audio_sha256"], "sample_id")
    assert keys[0] == keys[1] == keys[2] != keys[3]


def test_with_one_media_column_the_group_key_is_the_file_hash():
    frame = _frame(IDS[:5])
    assert group_keys(frame, KEYS, "sample_id") == list(frame["image_sha256"])


def test_without_media_each_sample_is_its_own_group():
    frame = pd.DataFrame({"sample_id": ["a", "b"]})
    keys = group_keys(frame, [], "sample_id")
    assert len(set(keys)) == 2 and keys == group_keys(frame[::-1], [], "sample_id")[::-1]


def test_rows_lacking_an_optional_media_file_are_not_grouped_by_it():
    frame = pd.DataFrame({"sample_id": ["a", "b", "c"], "image_sha256": ["i1", "i2", "i3"],
                          "audio_sha256": ["", "", "u1"]})
    assert len(set(group_keys(frame, ["image_sha256", "audio_sha256"], "sample_id"))) == 3
