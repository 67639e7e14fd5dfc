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

import pandas as pd
import pytest
from PIL import Image, ImageOps

from mmops.config import Params
from mmops.data import drift, sample
from mmops.data.clean import hash_column
from mmops.data.split import assign_splits
from mmops.features.cache import FeatureCache
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
    rows, rejects = drift.read_rows(params, root / "metadata.csv")
    assert rejects.empty
    return rows, drift.encode_manifest(params, rows, root, device="cpu")


def _split(params: Params, rows: pd.DataFrame) -> pd.DataFrame:
    return assign_splits(rows, params.split, [hash_column("image")])


@pytest.fixture(scope="module")
def reference(sample_dir: Path, tmp_path_factory) -> Reference:
    root = subset_of_sample(sample_dir, tmp_path_factory.mktemp("google") / "data", PER_CLASS)
    params = make_params(root)
    rows, features = _encoded(root)
    rows = _split(params, rows)
    profile = drift.build_profile(rows[rows["split"] == "train"], features, root, modalities_of(params))
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
    rows, _ = drift.read_rows(params, root / "metadata.csv")
    rows = _split(params, rows)
    train = rows[rows["split"] == "train"]
    share = (train["label"] == "Flags").mean()
    profile = drift.build_profile(train, None, root, modalities_of(params))  # no features: the cheap checks

    report = drift.compare(profile, rows[rows["label"] != "Flags"], None, root, modalities_of(params))

    assert report.drifted
    assert report.check("class 'Flags'").message == f"class 'Flags' is absent (reference {share:.1%})"
    assert report.check("labels").drifted and "'Flags'" in report.check("labels").message
    assert _drifted(report) == {"class 'Flags'", "labels"}


@pytest.mark.slow
def test_held_out_rows_of_the_same_data_do_not_drift(reference: Reference, tmp_path: Path):
    # the profile goes through its file, as the pipeline stores it
    profile = drift.load_profile(drift.save_profile(tmp_path / "reference.json", reference.profile))
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


def test_validate_stops_when_new_data_drifted_from_the_last_training(sample_dir: Path, tmp_path: Path):
    import dataclasses

    from mmops import stages
    from mmops.config import Layout
    from mmops.stages.data import DriftError

    google = subset_of_sample(sample_dir, tmp_path / "google", 10)
    layout = Layout(tmp_path / "artifacts")
    params = make_params(google)
    rows, _ = drift.read_rows(params, google / "metadata.csv")
    drift.save_profile(layout.reference, drift.build_profile(rows, None, google, modalities_of(params)))
    assert stages.validate(params, layout)["drifted"] is False  # the same data: nothing moved

    inverted = make_params(_inverted_copy(google, tmp_path / "inverted"))
    with pytest.raises(DriftError, match=r"(?s)drifted from the data the last model was trained on.*"
                                         r"image.brightness: moved"):
        stages.validate(inverted, layout)
    recorded = json.loads(layout.drift.read_text())
    assert recorded["drifted"] is True and recorded["reference"] == str(layout.reference)

    going_on = dataclasses.replace(inverted, drift=dataclasses.replace(inverted.drift, fail_validate=False))
    assert stages.validate(going_on, layout)["drifted"] is True


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
    profile = drift.save_profile(tmp_path / "reference.json", reference.profile)
    params_file = tmp_path / "params.yaml"
    params_file.write_text(yaml.safe_dump(reference.params.to_dict()))

    code = main(["drift", str(root / "metadata.csv"), "--reference", str(profile), "--params", str(params_file),
                 "--out", str(tmp_path / "drift.json")])

    printed = capsys.readouterr().out
    assert code == 3
    assert "DRIFTED" in printed and "- image features: moved" in printed
    assert "- text features" not in printed  # listed in the table, not among what moved
    assert json.loads((tmp_path / "drift.json").read_text())["drifted"] is True
