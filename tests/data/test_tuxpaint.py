"""The three-modality sample from Tux Paint's stamps: what a build takes from the Debian package,
what it leaves out and why, byte for byte the same each time, and only from a checked package.
The fast tests build from a small .deb made here in the package's layout; a slow one from the
real package."""

import filecmp
import io
import shutil
import tarfile
from pathlib import Path

import pandas as pd
import pytest

from mmops.data import tuxpaint

STAMPS = "./usr/share/tuxpaint/stamps"
PNG = b"\x89PNG\r\n\x1a\n fake picture "


def _ar(members: dict[str, bytes]) -> bytes:
    out = bytearray(b"!<arch>\n")
    for name, data in members.items():
        out += f"{name + '/':<16}{0:<12}{0:<6}{0:<6}{'100644':<8}{len(data):<10}`\n".encode()
        out += data + (b"\n" if len(data) % 2 else b"")
    return bytes(out)


def make_deb(path: Path, files: dict[str, bytes]) -> Path:
    """A .deb (ar: debian-binary, control.tar.xz, data.tar.xz) holding `files` under stamps/."""
    data = io.BytesIO()
    with tarfile.open(fileobj=data, mode="w:xz") as tar:
        everything = {f"./usr/share/doc/{tuxpaint.PACKAGE}/copyright": b"License: GPL-2\n",
                      **{f"{STAMPS}/{name}": content for name, content in files.items()}}
        for name, content in everything.items():
            info = tarfile.TarInfo(name)
            info.size = len(content)
            tar.addfile(info, io.BytesIO(content))
    control = io.BytesIO()
    with tarfile.open(fileobj=control, mode="w:xz"):
        pass
    path.write_bytes(_ar({"debian-binary": b"2.0\n", "control.tar.xz": control.getvalue(),
                          "data.tar.xz": data.getvalue()}))
    return path


def _svg(width: int, height: int) -> bytes:
    return (f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}">'
            f'<circle cx="{width / 2}" cy="{height / 2}" r="{min(width, height) / 3}" fill="teal"/></svg>').encode()


def _stamp(folder: str, name: str, caption: str = "A thing.", *, picture: str = "png", french: bool = True,
           svg: bytes = _svg(40, 20)):
    files = {f"{folder}/{name}.txt": f"{caption}\nfr.utf8=Une chose.\n".encode()}
    if picture:
        files[f"{folder}/{name}.{picture}"] = svg if picture == "svg" else PNG + name.encode()
    if french:
        files[f"{folder}/{name}_desc_fr.ogg"] = b"OggS french " + name.encode()
    files[f"{folder}/{name}_desc_es.ogg"] = b"OggS spanish " + name.encode()  # another language: not taken
    return files


@pytest.fixture
def deb(tmp_path) -> Path:
    files = {}
    for i in range(3):
        files |= _stamp("animals/birds", f"bird{i}", f"A bird number {i}.")
        files |= _stamp("food", f"apple{i}", f"An apple {i}.", french=i != 0)
    files |= _stamp("animals/birds", "swallow", picture="svg")  # only an SVG: rendered
    files |= _stamp("animals/birds", "eagle", picture="svg", svg=_svg(2000, 1000))  # rendered smaller
    files |= _stamp("animals/birds", "dodo", picture="svg", svg=b"<svg xmlns='http://www.w3.org/2000/svg'>")  # broken
    files |= _stamp("food", "gift", picture="")  # no picture at all
    files |= _stamp("space", "moon")  # a category of one stamp
    files["animals/birds/bird0_mirror.png"] = PNG  # the stamp mirrored: a variant, not a stamp
    files["animals/marsupials/wallaby_desc_fr.ogg"] = b"OggS orphan"  # a clip with no stamp
    return make_deb(tmp_path / "stamps.deb", files)


def _build(deb: Path, out: Path, min_per_class: int = 2) -> pd.DataFrame:
    tuxpaint.build_tuxpaint(deb, out, min_per_class)
    return pd.read_csv(out / "metadata.csv", dtype=str, keep_default_na=False)


def test_a_sample_is_the_picture_the_english_caption_and_the_french_clip_labelled_by_top_folder(deb, tmp_path):
    frame = _build(deb, tmp_path / "out")
    assert list(frame.columns) == ["sample_id", "image", "text", "audio", "label"]
    bird = frame.set_index("sample_id").loc["animals.birds.bird1"]
    assert (bird["text"], bird["label"]) == ("A bird number 1.", "animals")
    assert (tmp_path / "out" / bird["image"]).read_bytes() == PNG + b"bird1"
    assert (tmp_path / "out" / bird["audio"]).read_bytes() == b"OggS french bird1"
    assert sorted(frame["sample_id"]) == list(frame["sample_id"])  # sorted: the same order everywhere
    assert (tmp_path / "out" / "COPYRIGHT").read_text() == "License: GPL-2\n"


def test_an_svg_only_stamp_is_rendered_to_a_png_at_its_size_or_scaled_to_fit(deb, tmp_path):
    from PIL import Image

    frame = _build(deb, tmp_path / "out").set_index("sample_id")
    swallow = Image.open(tmp_path / "out" / frame.loc["animals.birds.swallow", "image"])
    assert (swallow.format, swallow.mode, swallow.size) == ("PNG", "RGBA", (40, 20))
    assert swallow.getpixel((20, 10))[3] == 255 and swallow.getpixel((0, 0))[3] == 0  # drawn, and transparent around
    assert Image.open(tmp_path / "out" / frame.loc["animals.birds.eagle", "image"]).size == (tuxpaint.SVG_MAX_SIDE, 256)


def test_a_stamp_without_a_french_clip_is_kept_with_its_audio_missing(deb, tmp_path):
    frame = _build(deb, tmp_path / "out").set_index("sample_id")
    assert frame.loc["food.apple0", "audio"] == ""
    assert frame.loc["food.apple1", "audio"] == "audio/food.apple1.ogg"


def test_mirrored_pictures_and_orphan_clips_are_not_stamps(deb, tmp_path):
    frame = _build(deb, tmp_path / "out")
    rejects = pd.read_csv(tmp_path / "out" / "rejects.csv", dtype=str)
    seen = set(frame["sample_id"]) | set(rejects["sample_id"])
    assert not any("mirror" in s or "wallaby" in s for s in seen)


def test_what_is_left_out_is_recorded_with_its_reason(deb, tmp_path):
    _build(deb, tmp_path / "out")
    rejects = pd.read_csv(tmp_path / "out" / "rejects.csv", dtype=str).set_index("sample_id")["reason"].to_dict()
    assert rejects.pop("animals.birds.dodo").startswith("SVG resvg cannot render: ")
    assert rejects == {
        "food.gift": "no picture",
        "space.moon": "category with fewer than 2 stamps",
    }


def test_the_build_is_byte_for_byte_the_same_each_time(deb, tmp_path):
    _build(deb, tmp_path / "a")
    _build(deb, tmp_path / "b")
    files = sorted(str(p.relative_to(tmp_path / "a")) for p in (tmp_path / "a").rglob("*") if p.is_file())
    _, mismatch, errors = filecmp.cmpfiles(tmp_path / "a", tmp_path / "b", files, shallow=False)
    assert len(files) > 10 and mismatch == errors == []


def test_an_existing_folder_is_never_overwritten(deb, tmp_path):
    (tmp_path / "out").mkdir()
    with pytest.raises(FileExistsError, match="out already exists"):
        tuxpaint.build_tuxpaint(deb, tmp_path / "out")


def test_a_package_that_is_not_the_recorded_one_is_refused_naming_it(deb, monkeypatch):
    monkeypatch.setattr(tuxpaint, "index_sha256", lambda: None)  # as on a machine without apt
    with pytest.raises(RuntimeError, match=r"stamps\.deb: SHA256 [0-9a-f]{64} is not the 6db6c1bf"):
        tuxpaint.check_deb(deb)


def test_a_file_that_is_not_a_debian_package_is_refused_naming_it(tmp_path):
    (tmp_path / "x.deb").write_bytes(b"PK\x03\x04 a zip")
    with pytest.raises(ValueError, match=r"x\.deb: not a Debian package"):
        tuxpaint.build_tuxpaint(tmp_path / "x.deb", tmp_path / "out")
    assert not (tmp_path / "out").exists()


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("apt-get") is None, reason="needs apt-get to fetch the package")
def test_the_real_package_is_fetched_checked_and_built(tmp_path):
    from tests.conftest import REPO

    deb = tuxpaint.fetch_deb(REPO / ".cache" / "apt")  # checked against the index and the recorded hash
    report = tuxpaint.build_tuxpaint(deb, tmp_path / "tuxpaint")
    frame = pd.read_csv(tmp_path / "tuxpaint" / "metadata.csv", dtype=str, keep_default_na=False)
    assert len(frame) == report.samples == 901 and report.with_audio == 877 and len(report.by_label) == 12
    assert sum(n for reason, n in report.rejects.items() if reason.startswith("SVG resvg cannot render")) == 16
    assert min(report.by_label.values()) >= tuxpaint.MIN_PER_CLASS
    assert frame["sample_id"].is_unique and (frame["text"] != "").all()
