import dataclasses
import json
from pathlib import Path

import pandas as pd
import pytest

from mmops import stages
from mmops.config import Layout
from mmops.data.clean import clean_manifest
from mmops.modalities import build_modalities
from tests.conftest import TINY_LABELS, modalities_of, raw_frame, write_manifest, write_png


def _clean(params, max_pixels=4_000_000):
    specs = [dataclasses.replace(m, options={**m.options, "max_pixels": max_pixels}) if m.name == "image" else m
             for m in params.modalities]
    return clean_manifest(raw_frame(params), params.data.root, params.data.labels, build_modalities(specs))


def _budget(params, fraction: float = 1.0):
    """`params` with a reject budget of `fraction` (a tiny manifest's one bad row is already 17%)."""
    return dataclasses.replace(params, clean=dataclasses.replace(params.clean, max_reject_fraction=fraction))


def _reasons(rejects: pd.DataFrame) -> dict[str, str]:
    return dict(zip(rejects["sample_id"], rejects["reason"]))


def test_clean_rejects_truncated_png_with_reason_and_keeps_the_rest(tiny_params):
    image = tiny_params.data.root / "images" / "s1.png"
    image.write_bytes(image.read_bytes()[:40])
    kept, rejects = _clean(tiny_params)
    assert list(kept["sample_id"]) == ["s0", "s2", "s3", "s4", "s5"]
    assert _reasons(rejects)["s1"].startswith("unreadable image")
    assert rejects.loc[0, "line"] == 3


def test_clean_rejects_zero_byte_and_non_image_files(tiny_params):
    (tiny_params.data.root / "images" / "s2.png").write_bytes(b"")
    (tiny_params.data.root / "images" / "s3.png").write_text("not a picture")
    _, rejects = _clean(tiny_params)
    assert set(_reasons(rejects)) == {"s2", "s3"}
    assert all(r.startswith("unreadable image") for r in rejects["reason"])


def test_clean_rejects_decompression_bomb_before_decoding(tiny_params):
    write_png(tiny_params.data.root / "images" / "s4.png", (1, 2, 3, 255), size=64)
    _, rejects = _clean(tiny_params, max_pixels=1000)
    assert "decompression bomb: 64x64 pixels exceeds 1000" in _reasons(rejects)["s4"]
    assert set(_reasons(rejects)) == {"s4"}  # 16x16 images are under the limit

def test_clean_rejects_duplicate_ids_keeping_the_first(tiny_params, tiny_rows):
    tiny_rows[4]["sample_id"] = "s1"
    write_manifest(tiny_params.data.manifest, tiny_rows)
    kept, rejects = _clean(tiny_params)
    assert list(kept["sample_id"]).count("s1") == 1
    assert _reasons(rejects) == {"s1": "duplicate sample_id: first on line 3"}


def test_clean_rejects_empty_text_unknown_label_missing_file_and_escaping_path(tiny_params, tiny_rows):
    tiny_rows[0]["text"] = " \t "
    tiny_rows[1]["label"] = "Zoo"
    tiny_rows[2]["image"] = "images/gone.png"
    tiny_rows[3]["image"] = "../outside.png"
    write_manifest(tiny_params.data.manifest, tiny_rows)
    kept, rejects = _clean(tiny_params)
    assert list(kept["sample_id"]) == ["s4", "s5"]
    reasons = _reasons(rejects)
    assert reasons["s0"] == "empty text"
    assert reasons["s1"] == "unknown label: 'Zoo'"
    assert reasons["s2"] == "image file not found"
    assert reasons["s3"].startswith("bad image path") and "escapes" in reasons["s3"]


def test_clean_gives_identical_images_the_same_content_hash(tiny_params):
    kept, _ = _clean(tiny_params)
    # tiny_rows colours repeat every third row: s0 and s3 are the same picture
    hashes = dict(zip(kept["sample_id"], kept["image_sha256"]))
    assert hashes["s0"] == hashes["s3"] and hashes["s0"] != hashes["s1"]


def test_clean_strips_text_and_does_not_modify_its_input(tiny_params, tiny_rows):
    tiny_rows[0]["text"] = "  padded  "
    write_manifest(tiny_params.data.manifest, tiny_rows)
    frame = raw_frame(tiny_params)
    before = frame.copy()
    kept, _ = clean_manifest(frame, tiny_params.data.root, TINY_LABELS, modalities_of(tiny_params))
    assert kept.loc[0, "text"] == "padded"
    pd.testing.assert_frame_equal(frame, before)


def test_clean_stage_writes_manifest_rejects_and_counts_by_kind(tiny_params, tiny_rows, tmp_path: Path):
    (tiny_params.data.root / "images" / "s5.png").write_bytes(b"\x89PNG\r\n\x1a\n")
    tiny_rows[3]["sample_id"] = "s0"
    tiny_rows[4]["sample_id"] = "s0"
    write_manifest(tiny_params.data.manifest, tiny_rows)
    layout = Layout(tmp_path / "artifacts")
    summary = stages.clean(_budget(tiny_params), layout)
    assert summary["kept"] == 3 and summary["rejected"] == 3
    assert json.loads(layout.clean_metrics.read_text())["rejected_by_reason"] == {
        "unreadable image": 1, "duplicate sample_id": 2,
    }
    assert len(pd.read_csv(layout.clean_manifest)) == 3
    assert list(pd.read_csv(layout.rejects)["sample_id"]) == ["s0", "s0", "s5"]
    assert not list(layout.clean_manifest.parent.glob(".*.tmp"))  # atomic writes leave no debris


def _optional_text(params):
    return dataclasses.replace(params, modalities=tuple(
        dataclasses.replace(m, required=False) if m.name == "text" else m for m in params.modalities))


def test_an_optional_modality_may_be_empty_and_the_row_is_kept(tiny_params, tiny_rows):
    tiny_rows[2]["text"] = ""
    write_manifest(tiny_params.data.manifest, tiny_rows)
    params = _optional_text(tiny_params)
    kept, rejects = clean_manifest(raw_frame(params), params.data.root, params.data.labels, modalities_of(params))
    assert rejects.empty and kept.loc[2, "text"] == ""
    # ... while the same row is a reject when the modality is required
    _, rejects = _clean(tiny_params)
    assert _reasons(rejects) == {"s2": "empty text"}


def test_a_row_with_every_modality_empty_is_rejected(tiny_params, tiny_rows):
    tiny_rows[2]["text"] = ""
    tiny_rows[2]["image"] = ""
    write_manifest(tiny_params.data.manifest, tiny_rows)
    params = dataclasses.replace(tiny_params, modalities=tuple(
        dataclasses.replace(m, required=False) for m in tiny_params.modalities))
    kept, rejects = clean_manifest(raw_frame(params), params.data.root, params.data.labels, modalities_of(params))
    assert _reasons(rejects) == {"s2": "no modality: every one is empty"} and len(kept) == 5


def test_the_same_content_under_another_id_is_kept_once_naming_the_kept_id(tiny_params, tiny_rows):
    tiny_rows[3]["text"] = "  thing\tnumber 0 "  # s3's image is byte-identical to s0's; now its text too, once normalised
    write_manifest(tiny_params.data.manifest, tiny_rows)
    kept, rejects = _clean(tiny_params)
    assert _reasons(rejects) == {"s3": "duplicate content: the same as s0"}
    assert "s0" in set(kept["sample_id"])


def test_the_same_image_under_conflicting_labels_rejects_every_one_of_them(tiny_params, tiny_rows):
    tiny_rows[4]["label"] = TINY_LABELS[2]  # s4's image is byte-identical to s1's, labelled TINY_LABELS[1]
    write_manifest(tiny_params.data.manifest, tiny_rows)
    kept, rejects = _clean(tiny_params)
    listed = f"s1 ({TINY_LABELS[1]}), s4 ({TINY_LABELS[2]})"
    assert _reasons(rejects) == {s: f"ambiguous label: the same file is labelled differently in {listed}"
                                 for s in ("s1", "s4")}
    assert list(kept["sample_id"]) == ["s0", "s2", "s3", "s5"]


def test_the_same_image_with_other_text_and_the_same_label_is_kept(tiny_params):
    kept, rejects = _clean(tiny_params)  # s0 and s3: one image, two texts, one label
    assert rejects.empty and {"s0", "s3"} <= set(kept["sample_id"])
    assert kept.loc[kept["sample_id"] == "s0", "image_sha256"].item() == \
        kept.loc[kept["sample_id"] == "s3", "image_sha256"].item()


def test_clean_counts_rejects_by_reason_and_the_files_rows_share(tiny_params, tiny_rows, tmp_path):
    tiny_rows[4]["label"] = TINY_LABELS[2]  # s1 and s4: one image, two labels
    write_png(tiny_params.data.root / "images" / "s6.png", (9, 9, 9, 255))  # Flags keeps a row
    tiny_rows.append({"sample_id": "s6", "image": "images/s6.png", "text": "six", "label": TINY_LABELS[1]})
    write_manifest(tiny_params.data.manifest, tiny_rows)
    summary = stages.clean(_budget(tiny_params), Layout(tmp_path / "artifacts"))
    assert summary["rejected_by_reason"] == {"ambiguous label": 2}
    assert summary["shared_media"] == {"image": {"files": 2, "rows": 4}}  # s0+s3, s2+s5


def test_rejects_within_the_budget_are_recorded_and_the_good_rows_kept(tiny_params, tiny_rows, tmp_path):
    tiny_rows[2]["image"] = "images/gone.png"
    write_manifest(tiny_params.data.manifest, tiny_rows)
    layout = Layout(tmp_path / "artifacts")
    assert stages.clean(_budget(tiny_params, 0.2), layout)["kept"] == 5  # 1 of 6: 16.7%
    assert len(pd.read_csv(layout.clean_manifest)) == 5


def test_rejects_exactly_at_the_budget_go_on(tiny_params, tiny_rows, tmp_path):
    tiny_rows[2]["image"] = "images/gone.png"
    write_manifest(tiny_params.data.manifest, tiny_rows)
    layout = Layout(tmp_path / "artifacts")
    assert stages.clean(_budget(tiny_params, 1 / 6), layout)["kept"] == 5  # 1 of 6: the budget, not above it


def test_more_rejects_than_the_budget_stop_clean_naming_the_top_reasons_and_their_lines(tiny_params, tiny_rows,
                                                                                       tmp_path):
    tiny_rows[1]["image"] = "images/gone.png"
    tiny_rows[2]["image"] = "images/gone.png"
    tiny_rows[4]["text"] = "\x00"
    write_manifest(tiny_params.data.manifest, tiny_rows)
    layout = Layout(tmp_path / "artifacts")
    with pytest.raises(ValueError) as stopped:
        stages.clean(tiny_params, layout)  # 3 of 6 rows > 5%
    message = str(stopped.value)
    assert "3 of 6 rows rejected (50.0%), more than clean.max_reject_fraction (5.0%)" in message
    assert "'image file not found' x2 (line 3, 4)" in message and "'empty text' x1 (line 6)" in message
    assert str(tiny_params.data.manifest) in message and str(layout.rejects) in message
    assert len(pd.read_csv(layout.rejects)) == 3 and not layout.clean_manifest.exists()
