"""Cutting the manifest into shards and merging their features back in order."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from mmops import artifacts, stages
from mmops.config import Layout
from mmops.features.cache import EncoderMismatch, FeatureCache
from mmops.features.shards import encode_shard, local_threads, merge, shard_ranges
from tests.conftest import write_manifest


@pytest.mark.parametrize(("n_rows", "shards"), [(10, 1), (10, 3), (10, 10), (3, 8), (1, 2), (7, 2), (1906, 4)])
def test_shards_cover_every_row_once_in_order_and_differ_by_one_row_at_most(n_rows, shards):
    ranges = shard_ranges(n_rows, shards)
    assert [i for start, stop in ranges for i in range(start, stop)] == list(range(n_rows))
    assert len(ranges) == min(shards, n_rows)
    sizes = [stop - start for start, stop in ranges]
    assert min(sizes) >= 1 and max(sizes) - min(sizes) <= 1


def test_one_shard_is_the_whole_manifest_and_an_empty_one_still_has_a_shard():
    assert shard_ranges(5, 1) == [(0, 5)]
    assert shard_ranges(0, 4) == [(0, 0)]
    assert shard_ranges(7, 2) == [(0, 4), (4, 7)]


def test_shard_ranges_refuse_a_shard_count_below_one():
    with pytest.raises(ValueError, match="shards must be >= 1"):
        shard_ranges(10, 0)


def test_local_workers_share_the_cores_without_oversubscribing_them():
    assert local_threads(1, cores=2) == 2
    assert local_threads(2, cores=2) == 1
    assert local_threads(4, cores=2) == 1


def _part(ids: list[str], offset: float, dtype: str = "float32") -> FeatureCache:
    n = len(ids)
    return FeatureCache(
        ids,
        {"image": torch.arange(n * 2, dtype=torch.float32).reshape(n, 2) + offset, "text": torch.full((n, 3), offset)},
        {"image": torch.ones(n, dtype=torch.bool), "text": torch.tensor([i % 2 == 0 for i in range(n)])},
        {"image": {"encoder": "efficientnet-lite0", "dtype": dtype},
         "text": {"encoder": "all-minilm-l6-v2", "dtype": dtype}},
    )


def test_merge_concatenates_in_the_order_given():
    a, b, c = _part(["s0", "s1"], 0.0), _part(["s2"], 10.0), _part(["s3", "s4", "s5"], 20.0)
    merged = merge([a, b, c])
    assert merged.sample_ids == ["s0", "s1", "s2", "s3", "s4", "s5"]
    for m in ("image", "text"):
        assert torch.equal(merged.features[m], torch.cat([a.features[m], b.features[m], c.features[m]]))
        assert torch.equal(merged.present[m], torch.cat([a.present[m], b.present[m], c.present[m]]))
    assert merged.encoders == a.encoders


def test_merge_refuses_shards_made_by_other_encoders_and_names_the_shard():
    with pytest.raises(EncoderMismatch, match=r"image\.dtype: shard 1 has 'bfloat16', shard 0 has 'float32'"):
        merge([_part(["s0"], 0.0), _part(["s1"], 1.0, dtype="bfloat16")])
    other = _part(["s1"], 1.0)
    del other.encoders["text"]
    with pytest.raises(EncoderMismatch, match="modalities"):
        merge([_part(["s0"], 0.0), other])
    with pytest.raises(ValueError, match="no shards"):
        merge([])


def test_featurizing_in_shards_equals_featurizing_in_one(tiny_params, tiny_rows, tmp_path):
    # An optional modality absent from a whole shard: that shard never loads its encoder, and
    # its rows are still marked absent in place.
    tiny_rows[4]["text"] = ""
    write_manifest(tiny_params.data.manifest, tiny_rows)
    params = dataclasses.replace(tiny_params, modalities=tuple(
        dataclasses.replace(m, required=m.name != "text", options={"size": 32} if m.name == "image" else m.options)
        for m in tiny_params.modalities))
    layout = Layout(tmp_path / "artifacts")
    stages.clean(params, layout)
    stages.featurize(params, layout, device="cpu")
    whole = FeatureCache.load(layout.features)

    frame = artifacts.read_csv(layout.clean_manifest)
    parts = [encode_shard(params, frame.iloc[start:stop], "cpu") for start, stop in shard_ranges(len(frame), 4)]
    assert [len(p.sample_ids) for p in parts] == [2, 2, 1, 1] and not parts[2].present["text"].any()
    sharded = merge(parts)
    assert sharded.sample_ids == whole.sample_ids and sharded.encoders == whole.encoders
    for m in whole.features:
        assert torch.equal(sharded.present[m], whole.present[m])
        torch.testing.assert_close(sharded.features[m], whole.features[m], atol=1e-5, rtol=0)


def test_a_skipped_modality_keeps_its_presence_and_identity_but_its_encoder_never_runs(
        tiny_params, tiny_rows, tmp_path, monkeypatch):
    # what a fine-tuned model's own encoder encodes (the shift stage, train.select_on) is not
    # encoded first by the pretrained one for nothing
    from mmops.modalities.image import ImageModality

    write_manifest(tiny_params.data.manifest, tiny_rows)
    layout = Layout(tmp_path / "artifacts")
    stages.clean(tiny_params, layout)
    frame = artifacts.read_csv(layout.clean_manifest)
    full = encode_shard(tiny_params, frame, "cpu")

    def refuse(*args, **kwargs):
        raise AssertionError("the skipped modality's encoder was built")

    monkeypatch.setattr(ImageModality, "encoder", refuse)
    skipped = encode_shard(tiny_params, frame, "cpu", skip={"image"})
    assert skipped.encoders == full.encoders
    assert torch.equal(skipped.present["image"], full.present["image"]) and full.present["image"].any()
    assert not skipped.features["image"].any() and skipped.features["image"].shape == full.features["image"].shape
    assert torch.equal(skipped.features["text"], full.features["text"])
