"""Drift: a reference profile of the train split, and what moves when the data does.

Every test works on real files: subsets of the real emoji sample (Google's art), the same
emoji in Twitter's art, and the Google images inverted. Encoding a few hundred images is
slow on a small machine, so those tests are marked `slow`.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image, ImageOps

from mmops.config import Params
from mmops.data import drift, sample
from mmops.data.clean import hash_column, read_rows
from mmops.data.profile import build_profile, load_profile, save_profile
from mmops.data.split import assign_splits
from mmops.features.cache import FeatureCache
from mmops.features.shards import encode_manifest
from tests.conftest import REPO, make_params, modalities_of, subset_of_sample

PER_CLASS = 40  # 360 rows: enough for the feature test to see new art, small enough to encode in seconds


@dataclass(frozen=True)
class Reference:
    """A subset of the Google sample, encoded, split, and the profile of its train rows."""

    root: Path
    params: Params
    rows: pd.DataFrame  # clean rows with their split
    features: FeatureCache
    profile: dict


def _encoded(root: Path) -> tuple[pd.DataFrame, FeatureCache]:
    params = make_params(root)
    rows, rejects = read_rows(params, root / "metadata.csv")
    assert rejects.empty
    return rows, encode_manifest(params, rows, root, device="cpu")


def _split(params: Params, rows: pd.DataFrame) -> pd.DataFrame:
    return assign_splits(rows, params.split, [hash_column("image")])


@pytest.fixture(scope="module")
def reference(sample_dir: Path, tmp_path_factory) -> Reference:
    root = subset_of_sample(sample_dir, tmp_path_factory.mktemp("google") / "data", PER_CLASS)
    params = make_params(root)
    rows, features = _encoded(root)
    rows = _split(params, rows)
    profile = build_profile(rows[rows["split"] == "train"], features, root, modalities_of(params))
    return Reference(root, params, rows, features, profile)


@pytest.fixture(scope="module")
def twitter_dir(tmp_path_factory) -> Path:
    """The whole sample in Twitter's art, built by the vendor builder from the (cached) npm package."""
    out = tmp_path_factory.mktemp("shift") / "twitter"
    sample.build_vendor_sample("twitter", out, REPO / ".cache" / "npm")
    return out


def _compare(ref: Reference, root: Path, rows: pd.DataFrame, features: FeatureCache | None) -> drift.DriftReport:
    return drift.compare(ref.profile, rows, features, root, modalities_of(ref.params))


def _drifted(report: drift.DriftReport) -> set[str]:
    return {check.name for check in report.checks if check.drifted}


# -- the vendor sample ---------------------------------------------------------------------------

def test_twitter_sample_lines_up_with_the_google_one(twitter_dir: Path, sample_dir: Path):
    twitter = pd.read_csv(twitter_dir / "metadata.csv", dtype=str, keep_default_na=False)
    google = pd.read_csv(sample_dir / "metadata.csv", dtype=str, keep_default_na=False)
    pd.testing.assert_frame_equal(twitter, google)  # same ids, texts, labels and file names
    same_bytes = [p for p in twitter["image"] if (twitter_dir / p).read_bytes() == (sample_dir / p).read_bytes()]
    assert len(same_bytes) < len(twitter) / 100  # but other art


def test_vendor_sample_is_never_built_into_data_or_an_existing_folder(tmp_path: Path):
    data = tmp_path / "data"
    for target in (data, data / "twitter"):
        with pytest.raises(ValueError, match="inside"):
            sample.build_vendor_sample("twitter", target, REPO / ".cache" / "npm", data_dir=data)
    (tmp_path / "taken").mkdir()
    with pytest.raises(FileExistsError):
        sample.build_vendor_sample("twitter", tmp_path / "taken", REPO / ".cache" / "npm", data_dir=data)
    with pytest.raises(ValueError, match="unknown emoji vendor 'apple'"):
        sample.build_vendor_sample("apple", tmp_path / "apple", REPO / ".cache" / "npm", data_dir=data)


# -- drift ---------------------------------------------------------------------------------------

def test_a_removed_class_is_flagged_and_named(sample_dir: Path, tmp_path: Path):
    root = subset_of_sample(sample_dir, tmp_path / "data", PER_CLASS)
    params = make_params(root)
    rows, _ = read_rows(params, root / "metadata.csv")
    rows = _split(params, rows)
    train = rows[rows["split"] == "train"]
    share = (train["label"] == "Flags").mean()
    profile = build_profile(train, None, root, modalities_of(params))  # no features: the cheap checks

    report = drift.compare(profile, rows[rows["label"] != "Flags"], None, root, modalities_of(params))

    assert report.drifted
    flags = report.check("class 'Flags'")
    assert flags.drifted and flags.message.startswith(
        f"class 'Flags' is absent (reference {share:.1%}, {(train['label'] == 'Flags').sum()} rows; about ")
    assert "'Flags'" in report.check("labels").message  # the largest move in the label mix


@pytest.mark.slow
def test_held_out_rows_of_the_same_data_do_not_drift(reference: Reference, tmp_path: Path):
    # the profile goes through its file, as the pipeline stores it
    profile = load_profile(save_profile(tmp_path / "reference.json", reference.profile))
    held_out = reference.rows[reference.rows["split"] != "train"]

    report = drift.compare(profile, held_out, reference.features, reference.root, modalities_of(reference.params))

    assert not report.drifted, drift.render_markdown(report)
    assert {c.name for c in report.checks} >= {"labels", "text.length", "image.width", "image.height",
                                                "image.brightness", "image features", "text features"}


@pytest.mark.slow
def test_inverted_images_move_brightness_and_image_features_not_text(reference: Reference, tmp_path: Path):
    root = shutil.copytree(reference.root, tmp_path / "inverted")
    for path in (root / "images").iterdir():
        with Image.open(path) as image:
            rgba = image.convert("RGBA")
        inverted = ImageOps.invert(rgba.convert("RGB"))
        inverted.putalpha(rgba.getchannel("A"))  # the picture inverted, its transparency kept
        inverted.save(path)
    rows, features = _encoded(root)

    report = _compare(reference, root, rows, features)

    assert _drifted(report) == {"image.brightness", "image features"}, drift.render_markdown(report)
    assert "image.brightness: moved" in report.check("image.brightness").message


@pytest.mark.slow
def test_twitter_art_moves_image_features_not_text_nor_labels(reference: Reference, twitter_dir: Path,
                                                              tmp_path: Path):
    root = subset_of_sample(twitter_dir, tmp_path / "twitter", PER_CLASS)  # the same emoji as the reference's
    rows, features = _encoded(root)

    report = _compare(reference, root, rows, features)

    assert report.check("image features").drifted, drift.render_markdown(report)
    assert not report.check("text features").drifted
    assert not report.check("labels").drifted
    assert not [c for c in report.checks if c.name.startswith("class ")]


# -- which rows are compared --------------------------------------------------------------------------

@pytest.fixture
def small(sample_dir: Path, tmp_path: Path):
    """A small subset of the sample (10 a class), its clean rows with their split, and a profile
    of the train rows without features."""
    root = subset_of_sample(sample_dir, tmp_path / "data", 10)
    params = make_params(root)
    rows, _ = read_rows(params, root / "metadata.csv")
    rows = _split(params, rows)
    train = rows[rows["split"] == "train"]
    return root, params, rows, build_profile(train, None, root, modalities_of(params))


def test_only_rows_the_reference_has_not_seen_are_compared(small):
    root, params, rows, profile = small
    train = rows["split"] == "train"

    report = drift.compare(profile, rows, None, root, modalities_of(params))

    assert (report.rows, report.seen, report.changed) == ((~train).sum(), train.sum(), 0)
    assert report.to_dict()["note"] == f"{(~train).sum()} new rows compared; {train.sum()} rows the reference " \
                                       "already had left out"


def test_a_reference_row_with_other_content_is_new_and_its_content_under_another_id_is_not(small):
    root, params, rows, profile = small
    train = rows[rows["split"] == "train"].reset_index(drop=True)
    edited = train.copy()
    edited.loc[0, "text"] = "an edited name"  # the same id, other content: new
    edited.loc[1, "sample_id"] = "renamed"  # the same content, another id: the reference has it

    report = drift.compare(profile, edited, None, root, modalities_of(params))

    assert (report.rows, report.seen, report.changed) == (1, len(train) - 1, 1)


def test_no_new_rows_records_that_there_is_nothing_to_compare(small):
    root, params, rows, profile = small

    report = drift.compare(profile, rows[rows["split"] == "train"], None, root, modalities_of(params))

    assert report.checks == () and not report.drifted and report.nothing_new
    assert drift.render_markdown(report).startswith("# Drift check: no new rows, nothing to compare\n")


def test_a_profile_without_row_identities_compares_every_row_and_says_so(small):
    root, params, rows, profile = small
    older = {k: v for k, v in profile.items() if k != "row_identity"}  # a profile from an older mmops

    report = drift.compare(older, rows, None, root, modalities_of(params))

    assert report.rows == len(rows) and report.seen is None
    assert "the reference's own among them" in report.note and "older mmops" in report.note


def test_the_profile_records_each_rows_id_and_content(small):
    _, _, rows, profile = small
    train = rows[rows["split"] == "train"]
    identity = profile["row_identity"]
    assert identity["sample_ids"] == list(train["sample_id"])
    assert len(set(identity["content"])) == len(train) and all(len(key) == 16 for key in identity["content"])


def test_training_profiles_its_train_split_but_knows_every_row_of_its_data_version(small):
    root, params, rows, _ = small
    train = rows[rows["split"] == "train"]
    # val and test rows are not new data either: only rows added since are compared
    profile = build_profile(train, None, root, modalities_of(params), seen=rows)

    assert profile["rows"] == len(train) and profile["row_identity"]["sample_ids"] == list(rows["sample_id"])
    assert drift.compare(profile, rows, None, root, modalities_of(params)).nothing_new


# -- thresholds, at the boundary ---------------------------------------------------------------------

def _labels(**counts: int) -> pd.Series:
    return pd.Series([label for label, n in counts.items() for _ in range(n)])


def test_a_class_absent_where_exactly_min_class_rows_were_expected_is_flagged():
    params = drift.DriftParams(min_class_rows=5)
    # the reference had 5 of A, and half of 10 new rows: 5 expected, none seen
    checks = drift.label_checks({"A": 5, "B": 5}, _labels(B=10), params)
    absent = [c for c in checks if c.name == "class 'A'"][0]
    assert absent.drifted and absent.statistic == 5
    assert absent.message == "class 'A' is absent (reference 50.0%, 5 rows; about 5 expected in 10)"


def test_a_class_absent_where_fewer_than_min_class_rows_were_expected_or_seen_is_not_flagged():
    params = drift.DriftParams(min_class_rows=5)
    few_expected = drift.label_checks({"A": 50, "B": 50}, _labels(B=9), params)  # 4.5 expected
    few_in_reference = drift.label_checks({"A": 4, "B": 4}, _labels(B=100), params)  # 50 expected, 4 ever seen
    for checks in (few_expected, few_in_reference):
        absent = [c for c in checks if c.name == "class 'A'"][0]
        assert not absent.drifted and "too few expected to tell" in absent.message


def test_a_ks_statistic_exactly_at_min_ks_statistic_is_not_drift():
    reference = [float(x) for x in range(1000)]
    moved = [x + 150.0 for x in reference]
    statistic = drift.measure_check("text.length", reference, moved, drift.DriftParams()).statistic

    at_floor = drift.measure_check("text.length", reference, moved, drift.DriftParams(min_ks_statistic=statistic))
    below = drift.measure_check("text.length", reference, moved,
                                drift.DriftParams(min_ks_statistic=float(np.nextafter(statistic, 0))))

    assert at_floor.p_value < 0.01 and not at_floor.drifted  # significant, but not above the floor
    assert below.drifted


def test_a_label_shift_exactly_at_max_label_shift_is_not_drift():
    reference = {"A": 500, "B": 500}
    new = _labels(A=700, B=300)  # A: 50% -> 70%
    shift = drift.label_checks(reference, new, drift.DriftParams())[-1].statistic

    at_floor = drift.label_checks(reference, new, drift.DriftParams(max_label_shift=shift))[-1]
    below = drift.label_checks(reference, new, drift.DriftParams(max_label_shift=float(np.nextafter(shift, 0))))[-1]

    assert at_floor.name == "labels" and at_floor.p_value < 0.01 and not at_floor.drifted
    assert below.drifted


# -- the classifier two-sample test --------------------------------------------------------------------

def _basis(dims: int) -> dict:
    """A profile's feature entry whose principal components are the coordinates themselves."""
    return {"mean": [0.0] * dims, "components": np.eye(dims).tolist()}


def test_the_drift_classifier_is_scored_on_rows_it_was_not_fitted_on():
    # pure noise on both sides, many dimensions: a classifier fitted on one half always tells its
    # own rows apart (it learns the noise), so only held-out rows give an honest "no drift"
    noise = np.random.default_rng(0)
    reference = {**_basis(32), "projected": noise.normal(size=(100, 32)).tolist()}

    check = drift.feature_check("image", reference, noise.normal(size=(100, 32)), drift.DriftParams())

    assert not check.drifted, check.message
    assert check.statistic < 0.6


def test_the_drift_classifier_tells_shifted_features_apart():
    noise = np.random.default_rng(0)
    reference = {**_basis(32), "projected": noise.normal(size=(100, 32)).tolist()}

    check = drift.feature_check("image", reference, noise.normal(size=(100, 32)) + 0.5, drift.DriftParams())

    assert check.drifted and check.statistic > 0.8, check.message


def _cache(ids: list[str], shift: dict[str, np.ndarray], encoders: dict | None = None) -> FeatureCache:
    """Features made up for `ids`: noise, plus each modality's row-wise `shift`."""
    import torch

    noise = np.random.default_rng(1)
    features = {m: torch.tensor(noise.normal(size=(len(ids), 8)) + shift[m][:, None], dtype=torch.float32)
                for m in ("image", "text")}
    return FeatureCache(ids, features, {m: torch.ones(len(ids), dtype=torch.bool) for m in features},
                        encoders or {m: {"name": f"{m}-encoder", "dtype": "float32"} for m in features})


def test_featurize_records_the_classifier_test_on_the_rows_the_reference_has_not_seen(small, tmp_path: Path):
    from mmops.config import Layout

    root, params, rows, _ = small
    layout = Layout(tmp_path / "artifacts")
    train = (rows["split"] == "train").to_numpy()
    # the new rows' images moved, their texts did not
    cache = _cache(list(rows["sample_id"]), {"image": np.where(train, 0.0, 3.0), "text": np.zeros(len(rows))})
    save_profile(layout.reference, build_profile(rows[train], cache, root, modalities_of(params)))

    recorded = drift.feature_drift(params, layout, rows, cache)

    assert recorded == json.loads(layout.feature_drift.read_text())
    assert (recorded["rows"], recorded["seen"]) == ((~train).sum(), train.sum())
    assert [(c["name"], c["drifted"]) for c in recorded["checks"]] == [("image features", True),
                                                                        ("text features", False)]
    assert drift.summarise(recorded).startswith("DRIFTED: image features: moved")


def test_featurize_records_why_features_of_other_encoders_are_not_compared(small, tmp_path: Path):
    from mmops.config import Layout

    root, params, rows, _ = small
    layout = Layout(tmp_path / "artifacts")
    zero = {"image": np.zeros(len(rows)), "text": np.zeros(len(rows))}
    save_profile(layout.reference, build_profile(rows, _cache(list(rows["sample_id"]), zero), root,
                                                             modalities_of(params)))
    other = _cache(list(rows["sample_id"]), zero, {m: {"name": "another", "dtype": "float32"} for m in zero})

    recorded = drift.feature_drift(params, layout, rows.assign(text=rows["text"] + " (new)"), other)

    assert recorded["reference"] is None and recorded["skipped"].startswith("not comparable: ")
    assert drift.summarise(recorded).startswith("not checked: not comparable")


# -- where the pipeline and the CLI use it ----------------------------------------------------------

def _inverted_copy(source: Path, dest: Path) -> Path:
    root = shutil.copytree(source, dest)
    for path in (root / "images").iterdir():
        with Image.open(path) as image:
            rgba = image.convert("RGBA")
        inverted = ImageOps.invert(rgba.convert("RGB"))
        inverted.putalpha(rgba.getchannel("A"))
        inverted.save(path)
    return root


@pytest.fixture
def google_reference(sample_dir: Path, tmp_path: Path):
    """A small Google subset, its layout, and a reference profile of all its rows (no features)."""
    from mmops.config import Layout

    google = subset_of_sample(sample_dir, tmp_path / "google", 10)
    layout = Layout(tmp_path / "artifacts")
    params = make_params(google)
    rows, _ = read_rows(params, google / "metadata.csv")
    save_profile(layout.reference, build_profile(rows, None, google, modalities_of(params)))
    return google, layout, params


def test_validate_records_drift_and_goes_on_by_default(google_reference, tmp_path: Path):
    from mmops import stages

    google, layout, _ = google_reference
    inverted = make_params(_inverted_copy(google, tmp_path / "inverted"))  # same ids, other images: all new

    assert stages.validate(inverted, layout)["drifted"] is True  # recorded, not refused: the gate judges

    recorded = json.loads(layout.drift.read_text())
    assert recorded["drifted"] is True and recorded["reference"] == str(layout.reference)
    assert recorded["rows"] == 90 and recorded["seen"] == 0 and recorded["changed"] == 90
    assert "image.brightness" in {check["name"] for check in recorded["checks"] if check["drifted"]}


def test_validate_stops_on_drift_only_where_asked_with_a_remedy_that_registers(google_reference, tmp_path: Path):
    import dataclasses

    from mmops import stages
    from mmops.stages.data import DriftError

    google, layout, _ = google_reference
    inverted = make_params(_inverted_copy(google, tmp_path / "inverted"))
    stopping = dataclasses.replace(inverted, drift=dataclasses.replace(inverted.drift, fail_validate=True))

    with pytest.raises(DriftError, match=r"(?s)drifted from the data the last model was trained on.*"
                                         r"image.brightness: moved") as stopped:
        stages.validate(stopping, layout)
    # experiments and uncommitted params register nothing: the remedy is a committed params.yaml
    # and a plain `dvc repro`
    assert "`fail_validate: false` under `drift:` in params.yaml, commit it" in str(stopped.value)
    assert "and run `dvc repro`" in str(stopped.value) and "dvc exp run" not in str(stopped.value)
    assert "dvc exp run" not in str(stopped.value)


def test_validate_on_the_references_own_rows_records_that_there_is_nothing_to_compare(google_reference):
    from mmops import stages

    google, layout, params = google_reference

    assert stages.validate(params, layout)["drifted"] is False

    recorded = json.loads(layout.drift.read_text())
    assert recorded["checks"] == [] and recorded["rows"] == 0 and recorded["seen"] == 90
    assert recorded["note"].startswith("no new rows, nothing to compare")


def test_the_twitter_sample_is_rebuilt_byte_for_byte_as_its_dvc_file_records(tmp_path: Path, capsys, monkeypatch):
    import subprocess
    import sys

    from mmops.cli import main

    subprocess.run(["git", "init", "-q"], cwd=tmp_path, check=True)
    subprocess.run([sys.executable, "-m", "dvc", "init", "-q"], cwd=tmp_path, check=True)
    (tmp_path / "shift").mkdir()
    shutil.copy(REPO / "shift" / "twitter.dvc", tmp_path / "shift" / "twitter.dvc")
    monkeypatch.chdir(tmp_path)
    assert main(["sample", "--vendor", "twitter", "--cache", str(REPO / ".cache" / "npm")]) == 0
    assert "matching shift/twitter.dvc" in capsys.readouterr().out
    assert main(["sample", "--vendor", "twitter", "--cache", str(REPO / ".cache" / "npm")]) == 0
    assert "already matches shift/twitter.dvc" in capsys.readouterr().out


def test_sample_for_another_vendor_is_never_built_into_data(tmp_path: Path, capsys):
    from mmops.cli import main

    assert main(["sample", "--vendor", "twitter", "--out", str(tmp_path / "data" / "tw"),
                 "--data", str(tmp_path / "data"), "--cache", str(REPO / ".cache" / "npm")]) == 1
    assert "inside" in capsys.readouterr().err


@pytest.mark.slow
def test_mmops_drift_names_what_moved_on_twitter_art_and_exits_3(reference: Reference, twitter_dir: Path,
                                                                 tmp_path: Path, capsys):
    import yaml

    from mmops.cli import main

    root = subset_of_sample(twitter_dir, tmp_path / "twitter", PER_CLASS)
    profile = save_profile(tmp_path / "reference.json", reference.profile)
    params_file = tmp_path / "params.yaml"
    params_file.write_text(yaml.safe_dump(reference.params.to_dict()))

    code = main(["drift", str(root / "metadata.csv"), "--reference", str(profile), "--params", str(params_file),
                 "--out", str(tmp_path / "drift.json")])

    printed = capsys.readouterr().out
    assert code == 3
    assert "DRIFTED" in printed and "- image features: moved" in printed
    assert "- text features" not in printed  # listed in the table, not among what moved
    assert json.loads((tmp_path / "drift.json").read_text())["drifted"] is True
