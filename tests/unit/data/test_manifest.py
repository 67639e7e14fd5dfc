from pathlib import Path

import pytest

from mmops.data.manifest import ManifestError, read_manifest
from mmops.modalities.media import resolve_media

NAMES = {"sample_id": "sample_id", "image": "image", "text": "text", "label": "label"}


def test_renamed_columns_map_to_canonical_names(tmp_path: Path):
    path = tmp_path / "m.csv"
    path.write_text("id,img,caption,cls\na,x.png,hello,Flags\n")
    frame = read_manifest(path, {"sample_id": "id", "image": "img", "text": "caption", "label": "cls"})
    assert list(frame.columns) == ["sample_id", "image", "text", "label", "line"]
    assert frame.loc[0, "line"] == 2


def test_malformed_csv_error_names_file_and_line(tmp_path: Path):
    path = tmp_path / "m.csv"
    path.write_text('sample_id,image,text,label\na,x.png,"broken quote,Flags\nb,y.png,ok,Flags\n')
    with pytest.raises(ManifestError, match=r"m\.csv: malformed CSV"):
        read_manifest(path, NAMES)


def test_extra_field_error_names_the_line(tmp_path: Path):
    path = tmp_path / "m.csv"
    path.write_text("sample_id,image,text,label\na,x.png,ok,Flags\nb,y.png,ok,Flags,extra\n")
    with pytest.raises(ManifestError, match="line 3"):
        read_manifest(path, NAMES)


def test_non_utf8_manifest_is_refused_with_its_name(tmp_path: Path):
    path = tmp_path / "m.csv"
    path.write_bytes(b"sample_id,image,text,label\na,x.png,caf\xe9,Flags\n")
    with pytest.raises(ManifestError, match=r"m\.csv: line 2: not UTF-8"):
        read_manifest(path, NAMES)


def test_missing_manifest_is_named(tmp_path: Path):
    with pytest.raises(ManifestError, match="nope.csv: manifest not found"):
        read_manifest(tmp_path / "nope.csv", NAMES)


@pytest.mark.parametrize("bad", ["../../etc/passwd", "images/../../outside.png", "/etc/passwd", ""])
def test_paths_escaping_the_data_root_are_refused(tmp_path: Path, bad: str):
    with pytest.raises(ValueError):
        resolve_media(tmp_path, bad)


def test_symlink_out_of_the_data_root_is_refused(tmp_path: Path):
    root = tmp_path / "data"
    root.mkdir()
    (tmp_path / "secret.png").write_bytes(b"x")
    (root / "link.png").symlink_to(tmp_path / "secret.png")
    with pytest.raises(ValueError, match="escapes"):
        resolve_media(root, "link.png")


def test_path_inside_the_root_resolves(tmp_path: Path):
    assert resolve_media(tmp_path, "images/a.png") == (tmp_path / "images" / "a.png").resolve()


def test_line_numbers_survive_blank_lines_and_multiline_fields(tmp_path: Path):
    path = tmp_path / "m.csv"
    path.write_text('sample_id,image,text,label\na,x.png,"two\nlines",Flags\n\nb,y.png,ok,Flags\n')
    frame = read_manifest(path, NAMES)
    assert list(frame["sample_id"]) == ["a", "b"]
    assert list(frame["line"]) == [2, 5]


def test_a_non_utf8_byte_deep_in_a_large_manifest_is_named_by_its_own_line(tmp_path: Path):
    rows = "".join(f"s{i},x.png,thing {i},Flags\n" for i in range(20_000))
    path = tmp_path / "m.csv"
    path.write_bytes(b"sample_id,image,text,label\n" + rows.encode() + b"last,x.png,caf\xe9,Flags\n")
    with pytest.raises(ManifestError, match=r"m\.csv: line 20002: not UTF-8"):
        read_manifest(path, {"sample_id": "sample_id"})
