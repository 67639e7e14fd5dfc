"""The augment stage: views of training samples only, each with its source's label, group and
split, the same bytes on every run; featurize encodes them, train learns from them, and
nothing that judges the model (val, test, the drift reference) ever sees one."""

import dataclasses
import hashlib
import json

import pytest
import torch
from PIL import Image

from mmops import artifacts, stages
from mmops.config import Layout
from mmops.features.cache import FeatureCache
from tests.conftest import make_params, subset_of_sample, write_manifest, write_png

LABELS = ["Animals & Nature", "Flags", "Smileys & Emotion"]
SPLITS = ["train", "train", "val", "test"] * 3


@pytest.fixture
def split_project(tmp_path):
    """A split manifest of 12 real-looking rows (4 a class), with images under data/."""
    rows = []
    for i, split in enumerate(SPLITS):
        write_png(tmp_path / "data" / "images" / f"s{i}.png", (i * 20, 200 - i * 10, 90, 255), size=24)
        rows.append({"sample_id": f"s{i}", "image": f"images/s{i}.png", "text": f"thing {i}; short-name-{i}",
                     "label": LABELS[i % 3], "group": f"g{i // 2}", "split": split})
    layout = Layout(tmp_path / "artifacts")
    write_manifest(layout.split_manifest, rows)
    params = make_params(tmp_path / "data", labels=LABELS,
                         augment={"enabled": True, "views": 2, "strength": {"image": 1.0, "text": 1.0}})
    return params, layout


def _digest(layout: Layout) -> dict[str, str]:
    files = sorted(p for p in (layout.augment / 'views').rglob("*") if p.is_file())
    return {str(p.relative_to((layout.augment / 'views'))): hashlib.sha256(p.read_bytes()).hexdigest() for p in files} | \
        {"manifest": hashlib.sha256((layout.augment / 'manifest.csv').read_bytes()).hexdigest()}


def test_only_train_samples_get_views_and_each_keeps_its_sources_label_group_and_split(split_project):
    params, layout = split_project
    result = stages.augment(params, layout)
    views = artifacts.read_csv((layout.augment / 'manifest.csv'))
    source = artifacts.read_csv(layout.split_manifest).set_index("sample_id")
    train = set(source.index[source["split"] == "train"])
    assert result["views"] == len(views) == 2 * len(train)
    assert set(views["source_id"]) == train
    assert (views["split"] == "train").all()
    for _, view in views.iterrows():
        assert view["label"] == source.loc[view["source_id"], "label"]
        assert view["group"] == source.loc[view["source_id"], "group"]
        assert view["sample_id"] not in source.index
        assert Image.open((layout.augment / 'views') / view["image"]).size == (24, 24)


def test_views_differ_from_their_source_and_from_each_other(split_project):
    params, layout = split_project
    stages.augment(params, layout)
    views = artifacts.read_csv((layout.augment / 'manifest.csv'))
    first = views[views["source_id"] == "s0"]
    pixels = [Image.open((layout.augment / 'views') / p).convert("RGBA").tobytes() for p in first["image"]]
    original = Image.open(params.data.root / "images" / "s0.png").convert("RGBA").tobytes()
    assert len(set(pixels)) == 2 and original not in pixels
    assert all(text != "thing 0; short-name-0" and text for text in views["text"])


def test_the_same_params_give_the_same_files_and_another_seed_other_ones(split_project):
    params, layout = split_project
    stages.augment(params, layout)
    first = _digest(layout)
    stages.augment(params, layout)
    assert _digest(layout) == first
    stages.augment(dataclasses.replace(params, augment=dataclasses.replace(params.augment, seed=1)), layout)
    assert _digest(layout)["manifest"] != first["manifest"]


def test_strength_zero_copies_a_modalitys_value(split_project):
    params, layout = split_project
    stages.augment(dataclasses.replace(params, augment=dataclasses.replace(params.augment, strength={"image": 1.0})),
                   layout)
    views = artifacts.read_csv((layout.augment / 'manifest.csv'))
    source = artifacts.read_csv(layout.split_manifest).set_index("sample_id")
    assert list(views["text"]) == [source.loc[s, "text"] for s in views["source_id"]]


def test_off_writes_an_empty_manifest_and_no_views(split_project):
    params, layout = split_project
    stages.augment(params, layout)  # a previous run's views are replaced, not kept
    stages.augment(dataclasses.replace(params, augment=dataclasses.replace(params.augment, enabled=False)), layout)
    assert artifacts.read_csv((layout.augment / 'manifest.csv')).empty
    assert (layout.augment / 'views').is_dir() and not any((layout.augment / 'views').iterdir())


def test_a_strength_for_an_unknown_modality_is_refused(split_project):
    params, layout = split_project
    bad = dataclasses.replace(params, augment=dataclasses.replace(params.augment, strength={"audio": 0.5}))
    with pytest.raises(ValueError, match="augment.strength' names audio"):
        stages.augment(bad, layout)
    assert not (layout.augment / 'manifest.csv').exists()


def test_an_absent_optional_value_stays_absent_in_its_views(split_project):
    params, layout = split_project
    frame = artifacts.read_csv(layout.split_manifest)
    frame.loc[frame["sample_id"] == "s0", "text"] = ""
    artifacts.write_csv(layout.split_manifest, frame)
    params = dataclasses.replace(params, modalities=tuple(
        dataclasses.replace(m, required=m.name != "text") for m in params.modalities))
    stages.augment(params, layout)
    views = artifacts.read_csv((layout.augment / 'manifest.csv'))
    assert (views.loc[views["source_id"] == "s0", "text"] == "").all()
    assert (views.loc[views["source_id"] == "s1", "text"] != "").all()


@pytest.mark.parametrize("strength", [-0.1, 1.5])
def test_a_strength_outside_zero_to_one_is_refused_by_params(tmp_path, strength):
    with pytest.raises(ValueError, match="augment.strength.image"):
        make_params(tmp_path, labels=LABELS, augment={"strength": {"image": strength}})


def test_featurize_encodes_the_views_and_train_learns_from_them_but_its_reference_does_not(sample_dir, tmp_path):
    root = subset_of_sample(sample_dir, tmp_path / "data", per_class=5)
    params = make_params(root, augment={"enabled": True, "views": 1, "strength": {"image": 0.5, "text": 0.5}},
                         train={"epochs": 2}, split={"val_fraction": 0.2, "test_fraction": 0.2})
    layout = Layout(tmp_path / "artifacts")
    for name in ("clean", "split", "augment", "featurize"):
        getattr(stages, name)(params, layout, **({"device": "cpu"} if name == "featurize" else {}))
    split = artifacts.read_csv(layout.split_manifest)
    views = artifacts.read_csv((layout.augment / 'manifest.csv'))
    cache = FeatureCache.load(layout.features)
    assert set(cache.sample_ids) == set(split["sample_id"]) | set(views["sample_id"])
    assert artifacts.read_csv(layout.clean_manifest).shape[0] == len(split)
    # a view is encoded as what it is, not as its source
    position = {s: i for i, s in enumerate(cache.sample_ids)}
    view, source = views.iloc[0]["sample_id"], views.iloc[0]["source_id"]
    assert not torch.equal(cache.features["image"][position[view]], cache.features["image"][position[source]])

    trained = stages.train(params, layout, device="cpu")
    train_rows = int((split["split"] == "train").sum())
    assert trained["train_samples"] == train_rows + len(views)
    reference = json.loads(layout.reference.read_text())
    assert reference["rows"] == train_rows  # the drift reference: the real rows only


def _drawings(tmp_path, labels=None, ids=None):
    """Another artist's drawings of the split project's samples (every one, or `ids`), as a
    manifest of its own with its pictures beside it; the captions differ from the dataset's."""
    rows = []
    for i, label in enumerate(LABELS[i % 3] for i in range(len(SPLITS))):
        if ids is not None and f"s{i}" not in ids:
            continue
        write_png(tmp_path / "drawn" / "images" / f"d{i}.png", (250, i * 15, 30, 255), size=24)
        rows.append({"sample_id": f"s{i}", "image": f"images/d{i}.png", "text": "",
                     "label": (labels or {}).get(f"s{i}", label)})
    write_manifest(tmp_path / "drawn" / "metadata.csv", rows)
    return str(tmp_path / "drawn" / "metadata.csv")


def _with_drawings(params, manifest, enabled=False):
    return dataclasses.replace(params, augment=dataclasses.replace(
        params.augment, enabled=enabled, drawings={"artist": manifest}))


def test_a_drawing_set_gives_each_training_sample_it_has_one_view_with_the_drawings_picture(split_project, tmp_path):
    params, layout = split_project
    result = stages.augment(_with_drawings(params, _drawings(tmp_path, ids={"s0", "s1", "s2", "s4"})), layout)
    views = artifacts.read_csv(layout.augment / "manifest.csv").set_index("source_id")
    source = artifacts.read_csv(layout.split_manifest).set_index("sample_id")
    assert sorted(views.index) == ["s0", "s1", "s4"]  # s2 is a val sample; the set lacks s5, s8, s9
    assert result["drawings"]["artist"]["views"] == 3
    for sid, view in views.iterrows():
        assert view["sample_id"] == f"{sid}~artist" and view["drawing"] == "artist"
        assert (view["label"], view["group"], view["split"]) == (source.loc[sid, "label"], source.loc[sid, "group"], "train")
        assert view["text"] == source.loc[sid, "text"]  # the set has no caption: the sample's is kept
        drawn = Image.open(tmp_path / "drawn" / "images" / f"d{sid[1:]}.png").convert("RGBA")
        assert list(Image.open(layout.augment / "views" / view["image"]).convert("RGBA").getdata()) == list(drawn.getdata())


def test_drawings_join_the_augmented_views(split_project, tmp_path):
    params, layout = split_project
    result = stages.augment(_with_drawings(params, _drawings(tmp_path), enabled=True), layout)
    views = artifacts.read_csv(layout.augment / "manifest.csv")
    assert result["views"] == len(views) == 2 * 6 + 6
    assert (views["drawing"] == "artist").sum() == 6


def test_a_drawing_labelled_otherwise_than_its_sample_is_an_error_naming_it(split_project, tmp_path):
    params, layout = split_project
    manifest = _drawings(tmp_path, labels={"s1": "Flags" if LABELS[1] != "Flags" else "Smileys & Emotion"})
    with pytest.raises(ValueError, match="augment.drawings.artist: sample 's1'"):
        stages.augment(_with_drawings(params, manifest), layout)


def test_an_absent_drawing_set_is_an_error_naming_it(split_project, tmp_path):
    params, layout = split_project
    with pytest.raises(FileNotFoundError, match="augment.drawings.artist: .*absent"):
        stages.augment(_with_drawings(params, str(tmp_path / "nowhere" / "metadata.csv")), layout)


def test_a_drawing_set_name_must_be_usable_in_a_view_id(tmp_path):
    with pytest.raises(ValueError, match="augment.drawings"):
        make_params(tmp_path, labels=LABELS, augment={"drawings": {"open moji": "x.csv"}})
