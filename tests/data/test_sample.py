"""The embedded sample: real, deterministic, and clean by the pipeline's own rules."""

import filecmp
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

from mmops.data import sample
from mmops.data.clean import clean_manifest
from mmops.data.validate import validate_manifest
from tests.conftest import REPO, make_params, modalities_of, raw_frame


def test_sample_text_is_lowercased_name_and_short_names():
    entry = {"name": "GRINNING FACE", "short_names": ["grinning"]}
    assert sample.sample_text(entry) == "grinning face; grinning"
    assert sample.sample_text({"name": "Thumbs Up", "short_names": ["+1", "thumbs up"]}) == "thumbs up; +1"


def test_sample_has_nine_categories_without_component(sample_dir: Path):
    frame = pd.read_csv(sample_dir / "metadata.csv", dtype=str, keep_default_na=False)
    assert len(frame) == 1906
    assert frame["sample_id"].is_unique
    assert set(frame["label"]) == set(yaml.safe_load((REPO / "params.yaml").read_text())["data"]["labels"])


def test_sample_build_is_deterministic(sample_dir: Path, tmp_path: Path):
    again = tmp_path / "data"
    sample.build_sample(sample.fetch_package(REPO / ".cache" / "npm"), again)
    comparison = filecmp.dircmp(sample_dir, again)
    assert comparison.left_only == comparison.right_only == comparison.diff_files == []
    names = [p.name for p in (again / "images").iterdir()]
    _, mismatch, errors = filecmp.cmpfiles(sample_dir / "images", again / "images", names, shallow=False)
    assert mismatch == errors == []


def test_sample_matches_the_md5_in_data_dvc(sample_dir: Path, tmp_path: Path):
    """`dvc add` of a fresh build records exactly the md5 committed in data.dvc."""
    subprocess.run([sys.executable, "-m", "dvc", "init", "--no-scm", "-q"], cwd=tmp_path, check=True)
    shutil.copytree(sample_dir, tmp_path / "data")
    subprocess.run([sys.executable, "-m", "dvc", "add", "-q", "data"], cwd=tmp_path, check=True)
    built = yaml.safe_load((tmp_path / "data.dvc").read_text())["outs"][0]["md5"]
    committed = yaml.safe_load((REPO / "data.dvc").read_text())["outs"][0]["md5"]
    assert built == committed


def test_sample_passes_validation_and_cleaning_rejects_nothing(sample_dir: Path):
    params = make_params(sample_dir)
    frame = raw_frame(params)
    report = validate_manifest(frame, params.data, modalities_of(params))
    assert report.failures == [] and report.warnings == []
    kept, rejects = clean_manifest(frame, params.data.root, params.data.labels, modalities_of(params))
    assert len(kept) == 1906 and rejects.empty


def test_tarball_with_wrong_integrity_is_refused_and_removed(tmp_path: Path):
    fake = tmp_path / sample.TARBALL
    fake.write_bytes(b"not the package")
    with pytest.raises(RuntimeError, match="does not match the published"):
        sample.fetch_package(tmp_path)
    assert not fake.exists()


def test_building_into_an_existing_folder_is_refused(tmp_path: Path):
    (tmp_path / "data").mkdir()
    with pytest.raises(FileExistsError):
        sample.build_sample(tmp_path / "unused.tgz", tmp_path / "data")


def test_openmoji_file_names_drop_the_variation_selectors_openmoji_leaves_out():
    names = {"package/color/svg/2764.svg", "package/color/svg/0023-FE0F-20E3.svg"}
    assert sample._svg_name("2764-FE0F", names, "package/color/svg/") == "package/color/svg/2764.svg"
    assert sample._svg_name("0023-FE0F-20E3", names, "package/color/svg/") == "package/color/svg/0023-FE0F-20E3.svg"
    assert sample._svg_name("1F600", names, "package/color/svg/") is None


@pytest.mark.slow
def test_openmoji_sample_lines_up_with_the_default_one_and_matches_its_dvc_file(sample_dir: Path, tmp_path: Path):
    """Same rows, names and categories as data/, OpenMoji's picture at the sample's 64 px, and
    the bytes styles/openmoji.dvc records (rendering does not depend on the machine)."""
    cache = REPO / ".cache" / "npm"
    out = tmp_path / "openmoji"
    sample.build_sample(sample.fetch_package(cache, "openmoji"), out, "openmoji", entries_from=sample.fetch_package(cache))
    read = lambda folder: pd.read_csv(folder / "metadata.csv", dtype=str, keep_default_na=False)  # noqa: E731
    drawn, default = read(out), read(sample_dir)
    assert len(drawn) == len(default) == 1906
    assert drawn.equals(default)  # OpenMoji draws every emoji of the sample; the file names are data/'s
    assert not filecmp.cmp(out / drawn["image"][0], sample_dir / default["image"][0], shallow=False)
    from PIL import Image
    assert {Image.open(out / p).size for p in drawn["image"]} == {(64, 64)}
    subprocess.run([sys.executable, "-m", "dvc", "init", "--no-scm", "-q"], cwd=tmp_path, check=True)
    subprocess.run([sys.executable, "-m", "dvc", "add", "-q", "openmoji"], cwd=tmp_path, check=True)
    built = yaml.safe_load((tmp_path / "openmoji.dvc").read_text())["outs"][0]["md5"]
    assert built == yaml.safe_load((REPO / "styles" / "openmoji.dvc").read_text())["outs"][0]["md5"]


def test_an_svg_vendor_needs_the_default_vendors_rows(tmp_path: Path):
    with pytest.raises(ValueError, match="entries_from"):
        sample.build_sample(tmp_path / "unused.tgz", tmp_path / "openmoji", "openmoji")
