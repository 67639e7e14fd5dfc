"""The suites at the later hand-offs: the cleaned manifest and the feature cache, and the one
report that shows all three."""

from __future__ import annotations

import dataclasses
import json

import pytest
import torch

from mmops import artifacts, stages
from mmops.config import Layout
from mmops.data.clean import clean_manifest
from mmops.data.suites import check_cleaned, check_features
from mmops.features.cache import FeatureCache
from mmops.stages.release import write_data_report
from tests.conftest import TINY_LABELS, modalities_of, raw_frame, write_manifest


def _cleaned(params):
    return clean_manifest(raw_frame(params), params.data.root, params.data.labels, modalities_of(params))


def _suite(params, kept, rejects):
    return check_cleaned(kept, rejects, params.data, params.clean, modalities_of(params), "clean/manifest.csv")


def test_a_clean_result_passes_and_carries_the_media_facts(tiny_params):
    kept, rejects = _cleaned(tiny_params)
    assert list(kept[["image_width", "image_height", "image_pixels", "image_mode"]].iloc[0]) == [16, 16, 256, "RGBA"]
    assert kept["image_bytes"].iloc[0] > 0
    result = _suite(tiny_params, kept, rejects)
    assert result.success and result.failures == []


def test_a_class_below_its_floor_stops_clean_naming_it(tiny_params, tmp_path):
    params = dataclasses.replace(tiny_params, clean=dataclasses.replace(tiny_params.clean, min_per_class=3))
    layout = Layout(tmp_path / "artifacts")
    with pytest.raises(ValueError, match="class 'Flags' has 2 row"):
        stages.clean(params, layout)
    assert not layout.clean_manifest.exists()
    assert json.loads(layout.clean_expectations.read_text())["success"] is False


def test_text_that_is_not_normalised_is_named_by_line(tiny_params):
    kept, rejects = _cleaned(tiny_params)
    kept.loc[2, "text"] = "two  spaces"
    [failure] = _suite(tiny_params, kept, rejects).failures
    assert failure == "line 4: text 'two  spaces': not normalised (clean stores 'two spaces')"


def test_a_rejected_row_left_in_the_kept_rows_fails(tiny_params, tiny_rows):
    tiny_rows[1]["image"] = "images/gone.png"
    write_manifest(tiny_params.data.manifest, tiny_rows)
    kept, rejects = _cleaned(tiny_params)
    leaked = kept.assign(line=kept["line"].replace({4: 3}))  # a kept row carries the reject's line
    assert any(f.startswith("line 3: line 3") for f in _suite(tiny_params, leaked, rejects).failures)


def test_an_image_fact_out_of_bounds_fails(tiny_params):
    kept, rejects = _cleaned(tiny_params)
    kept.loc[0, "image_mode"] = "CMYK"
    assert _suite(tiny_params, kept, rejects).failures == [
        "line 2: image_mode 'CMYK': value outside the configured set"]


def _cache(ids, *, text=None, image=None):
    torch.manual_seed(0)
    text = text if text is not None else torch.nn.functional.normalize(torch.randn(len(ids), 384), dim=1)
    image = image if image is not None else torch.rand(len(ids), 1280)
    features = {"image": image, "text": text}
    present = {name: torch.ones(len(ids), dtype=torch.bool) for name in features}
    return FeatureCache(list(ids), features, present, {})


def test_sound_features_pass(tiny_params):
    kept, _ = _cleaned(tiny_params)
    assert check_features(_cache(kept["sample_id"]), kept, modalities_of(tiny_params), "f.pt").success


def test_nan_features_are_named_by_sample(tiny_params):
    kept, _ = _cleaned(tiny_params)
    cache = _cache(kept["sample_id"])
    cache.features["image"][3, 7] = float("nan")
    failures = check_features(cache, kept, modalities_of(tiny_params), "f.pt").failures
    assert "sample_id s3: image_finite False: value outside the configured set" in failures


def test_a_missing_sample_a_wrong_width_and_a_collapsed_vector_fail(tiny_params):
    kept, _ = _cleaned(tiny_params)
    ids = list(kept["sample_id"])[:-1]
    text = torch.nn.functional.normalize(torch.randn(len(ids), 384), dim=1)
    text[0] = 0
    failures = check_features(_cache(ids, text=text, image=torch.rand(len(ids), 1000)), kept,
                              modalities_of(tiny_params), "f.pt").failures
    assert any(f.startswith("table: table row count to equal") for f in failures)
    assert any(f.startswith("sample_id s0: image_dim 1000") for f in failures)
    assert "sample_id s0: text_norm 0.0: outside the expected range" in failures


def test_the_data_report_shows_all_three_suites_and_every_reject(tiny_params, tiny_rows, tmp_path):
    image = tiny_params.data.root / "images" / "s4.png"
    image.write_bytes(image.read_bytes()[:40])
    tiny_params = dataclasses.replace(tiny_params, clean=dataclasses.replace(tiny_params.clean,
                                                                             max_reject_fraction=0.2))
    layout = Layout(tmp_path / "artifacts")
    stages.validate(tiny_params, layout)
    stages.clean(tiny_params, layout)
    kept, _ = _cleaned(tiny_params)
    suite = check_features(_cache(kept["sample_id"]), kept, modalities_of(tiny_params), "f.pt")
    artifacts.write_json(layout.feature_expectations, suite.to_dict())
    page = write_data_report(tiny_params, layout).read_text()
    for name in ("raw_manifest: passed", "cleaned_manifest: passed", "feature_cache: passed"):
        assert name in page
    assert "Rejected by clean: 1 row(s)" in page and "<td>s4</td>" in page
    assert "unreadable image: not a PNG" in page
    assert "<script" not in page and "http" not in page
