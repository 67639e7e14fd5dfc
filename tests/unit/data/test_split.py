import dataclasses
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from mmops import stages
from mmops.features.cache import FeatureCache
from mmops.models.fusion import all_present
from mmops.config import Layout, SplitParams
from mmops.data.split import assign_splits, family_key, family_links, group_keys, near_duplicate_links, split_of
from tests.conftest import TINY_LABELS, make_params, modalities_of

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


# -- near-duplicates and families ------------------------------------------------------------


WORDS = SplitParams().family_words


@pytest.mark.parametrize("text, key", [
    ("cook", "cook"), ("man cook; male-cook", "cook"), ("woman cook; female-cook", "cook"),
    ("person bowing deeply; bow", "bowing deeply"), ("family: man, woman, boy; man-woman-boy", "family"),
    ("grinning face; grinning", "grinning face"), ("man; man", ""),
])
def test_a_family_is_the_name_without_person_and_gender_words(text, key):
    assert family_key(text, WORDS, ";") == key


def test_family_links_join_each_member_to_the_first_and_skip_empty_keys():
    assert family_links(["cook", "", "cook", "judge", "cook", ""]) == [(0, 2), (0, 4)]


def test_near_duplicate_links_are_pairs_within_the_distance():
    hashes = ["00" * 32, "01" + "00" * 31, "ff" * 32, "", "03" + "00" * 31]  # 0, 1, 256, none, 2 bits set
    assert near_duplicate_links(hashes, 1) == [(0, 1), (1, 4)]
    assert near_duplicate_links(hashes, 2) == [(0, 1), (0, 4), (1, 4)]
    assert near_duplicate_links(hashes, -1) == []


def test_near_duplicate_pairs_beyond_the_first_block_name_their_own_rows():
    # far more rows than one block of the all-pairs search (512), a pair deep in the second one
    rows = np.random.default_rng(0).integers(0, 256, size=(1100, 32), dtype=np.uint8)
    rows[1050] = rows[700]
    rows[1050, 0] ^= 1  # one bit apart
    hashes = [bytes(row).hex() for row in rows]
    assert near_duplicate_links(hashes, 4) == [(700, 1050)]  # random 256-bit hashes differ in ~128 bits


def test_a_row_that_links_to_nothing_keeps_the_split_identical_files_gave_it():
    frame = _frame(IDS[:300])
    linked = assign_splits(frame, SplitParams(), KEYS, links=[(0, 1), (1, 2)])
    alone = assign_splits(frame, SplitParams(), KEYS)
    assert (linked["split"][3:] == alone["split"][3:]).all()
    assert linked["split"][0] == linked["split"][1] == linked["split"][2]


def test_linked_rows_never_straddle_and_adding_unrelated_rows_moves_none():
    families = [f"concept {i % 50}" for i in range(1000)]
    frame = _frame(IDS[:1000]).assign(family=families)
    before = assign_splits(frame, SplitParams(), KEYS, links=family_links(families))
    assert (before.groupby("family")["split"].nunique() == 1).all()
    more = pd.concat([frame, _frame(IDS[1000:1500]).assign(family=[f"new {i}" for i in range(500)])],
                     ignore_index=True)
    after = assign_splits(more, SplitParams(), KEYS, links=family_links(list(more["family"])))
    assert list(after["split"][:1000]) == list(before["split"])


def _phash(image, sample_dir: Path, tmp_path: Path, name: str) -> str:
    image.save(tmp_path / name)
    [m] = [m for m in modalities_of(make_params(sample_dir)) if m.near_duplicate_fact]
    return m.facts(name, tmp_path)[m.near_duplicate_fact]


def test_a_reencoded_or_brightened_image_is_a_near_duplicate_another_emoji_is_not(sample_dir, tmp_path):
    from PIL import Image, ImageEnhance

    original = Image.open(sample_dir / "images" / "1f600.png").convert("RGBA")
    flat = Image.new("RGB", original.size, (255, 255, 255))
    flat.paste(original, mask=original.getchannel("A"))
    hashes = [_phash(original, sample_dir, tmp_path, "a.png"),
              _phash(flat, sample_dir, tmp_path, "b.jpg"),  # re-encoded as JPEG
              _phash(ImageEnhance.Brightness(flat).enhance(1.1), sample_dir, tmp_path, "c.png"),  # brightened
              _phash(Image.open(sample_dir / "images" / "1f697.png"), sample_dir, tmp_path, "d.png")]  # a car
    assert near_duplicate_links(hashes, SplitParams().near_duplicate_distance) == [(0, 1), (0, 2), (1, 2)]


@pytest.mark.slow
def test_on_the_sample_no_group_family_or_near_duplicate_pair_straddles_and_only_merged_groups_move(
        sample_dir, tmp_path):
    params = make_params(sample_dir, clean={"min_per_class": 5})
    layout = Layout(tmp_path / "artifacts")
    stages.clean(params, layout)
    stages.split(params, layout)
    grouped = pd.read_csv(layout.split_manifest, dtype=str, keep_default_na=False)
    assert (grouped.groupby("group")["split"].nunique() == 1).all()
    assert (grouped[grouped["family"] != ""].groupby("family")["split"].nunique() == 1).all()

    report = json.loads(layout.split_metrics.read_text())
    versus = report["versus_identical_files_only"]
    assert versus["test_rows_with_a_train_sibling"]["after"] == 0 < versus["test_rows_with_a_train_sibling"]["before"]
    assert versus["near_duplicate_pairs_across_splits"]["after"] == 0
    # a row moved only if its group merged several groups of identical files
    files_only = assign_splits(grouped.drop(columns=["group", "split"]), params.split, ["image_sha256"])
    moved = grouped["split"] != files_only["split"]
    merged = grouped.assign(files=files_only["group"]).groupby("group")["files"].nunique()
    assert moved.sum() == versus["rows_moved"] > 0
    assert set(grouped.loc[moved, "group"]) <= set(merged[merged > 1].index)
    assert report["rows"]["test"] == (grouped["split"] == "test").sum()


def test_the_group_table_lists_each_group_of_several_rows_with_what_links_it():
    from mmops.data.split import group_table

    frame = pd.DataFrame({"sample_id": list("abcdef"), "image_sha256": ["h1", "h1", "h2", "h3", "h4", "h5"],
                          "text": ["cook", "cook; x", "man cook", "woman judge", "tree", "bush"]})
    families = [family_key(t, WORDS, ";") for t in frame["text"]]
    near = [(4, 5)]
    grouped = assign_splits(frame.assign(family=families), SplitParams(), KEYS,
                            links=near + family_links(families))
    table = group_table(grouped, KEYS, near, "text", ";")
    assert list(table["rows"]) == [3, 2]
    assert list(table["linked_by"]) == ["family, same file", "near-duplicate"]
    assert list(table["sample_ids"]) == ["a b c", "e f"]
    assert table["names"][0] == "cook | cook | man cook"


def test_a_new_row_linking_two_old_groups_moves_them_as_one_and_nothing_else():
    frame = _frame(IDS[:400]).assign(family=[""] * 400)
    before = assign_splits(frame, SplitParams(), KEYS)
    a, b = next((i, j) for i in range(400) for j in range(400) if before["split"][i] != before["split"][j])
    bridge = _frame(["bridge"]).assign(family=[""])
    after = assign_splits(pd.concat([frame, bridge], ignore_index=True), SplitParams(), KEYS,
                          links=[(a, 400), (b, 400)])
    assert after["split"][a] == after["split"][b] == after["split"][400]
    moved = set(after.index[:400][after["split"][:400] != before["split"]])
    assert moved in ({a}, {b})


def test_the_split_stage_keeps_near_duplicates_and_families_together(tiny_params, tiny_rows, tmp_path):
    from PIL import Image, ImageEnhance

    from tests.conftest import write_manifest

    root = tiny_params.data.root
    picture = Image.new("RGB", (64, 64), "white")
    picture.paste((200, 40, 40), (8, 8, 40, 56))
    picture.save(root / "images" / "near.png")
    ImageEnhance.Brightness(picture).enhance(1.1).save(root / "images" / "near-copy.png")
    rows = [*tiny_rows,
            {"sample_id": "n1", "image": "images/near.png", "text": "a red bar", "label": TINY_LABELS[0]},
            {"sample_id": "n2", "image": "images/near-copy.png", "text": "a bar, brighter", "label": TINY_LABELS[0]}]
    for i in range(40):  # a family: the cook in many people's versions, each its own picture
        Image.new("RGB", (8, 8), (i * 6, 255 - i * 6, 7)).save(root / "images" / f"cook{i}.png")
        rows.append({"sample_id": f"c{i}", "image": f"images/cook{i}.png", "text": f"{WORDS[i % 4]} cook",
                     "label": TINY_LABELS[1]})
    write_manifest(tiny_params.data.manifest, rows)
    layout = Layout(tmp_path / "artifacts")
    stages.clean(tiny_params, layout)
    stages.split(tiny_params, layout)
    split = pd.read_csv(layout.split_manifest, dtype=str, keep_default_na=False).set_index("sample_id")
    assert split.loc["n1", "group"] == split.loc["n2", "group"]
    assert split.loc["n1", "split"] == split.loc["n2", "split"]
    assert split.loc[[f"c{i}" for i in range(40)], "split"].nunique() == 1
    assert set(split.loc[[f"c{i}" for i in range(40)], "family"]) == {"cook"}
