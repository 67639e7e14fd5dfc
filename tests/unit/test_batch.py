"""Batch scoring in chunks: every readable row scored as the server would score it, every other
row listed with its reason, and the scores computed when the manifest is labelled."""

import dataclasses
import io
from types import SimpleNamespace

import pandas as pd
import pytest
from PIL import Image

from mmops.data.manifest import ManifestError
from mmops.serving import batch
from tests.conftest import TINY_LABELS, write_manifest
from tests.unit.test_serving import _ckpt, _load, _tiny_image_params


@pytest.fixture
def scoring(tiny_params, tiny_rows, tmp_path):
    params = _tiny_image_params(tiny_params)
    served = _load(_ckpt(params, tmp_path / "model.pt"))
    (tmp_path / "data" / "images" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    rows = [*tiny_rows[:3],
            {"sample_id": "gone", "image": "images/missing.png", "text": "x", "label": TINY_LABELS[0]},
            {"sample_id": "broken", "image": "images/broken.png", "text": "x", "label": TINY_LABELS[0]},
            {"sample_id": "empty", "image": "", "text": " ", "label": TINY_LABELS[0]},
            {"sample_id": "words", "image": "", "text": "only words", "label": TINY_LABELS[1]},
            *tiny_rows[3:]]
    manifest = write_manifest(tmp_path / "batch" / "manifest.csv", rows)
    # the model as `mlflow.pyfunc.load_model` hands it over: predict(frame), and the pyfunc inside
    model = SimpleNamespace(predict=lambda frame: served.predict(None, frame), served=served,
                            unwrap_python_model=lambda: served)
    return params, manifest, model


def _run(params, manifest, model, chunk_size):
    rows = batch.read_batch(manifest, params, batch.served_modalities(model))
    parts = [batch.score_chunk(model, rows.iloc[i:i + chunk_size], params.data.root)
             for i in batch.chunk_starts(len(rows), chunk_size)]
    return rows, pd.concat([p for p, _ in parts], ignore_index=True), pd.concat([r for _, r in parts], ignore_index=True)


def test_every_readable_row_is_scored_and_each_other_row_listed_with_its_reason(scoring):
    params, manifest, model = scoring
    _, predictions, rejects = _run(params, manifest, model, chunk_size=4)
    assert predictions["sample_id"].tolist() == ["s0", "s1", "s2", "words", "s3", "s4", "s5"]
    reasons = dict(zip(rejects["sample_id"], rejects["reason"]))
    assert reasons == {"gone": "image: image file not found",
                       "broken": "image: unreadable image: not a PNG, JPEG, WEBP, GIF or BMP image",
                       "empty": "no modality: every one is empty"}
    assert rejects.set_index("sample_id")["line"].to_dict() == {"gone": 5, "broken": 6, "empty": 7}


def test_each_row_gets_the_answer_the_server_gives_it_alone_whatever_the_chunk(scoring):
    params, manifest, model = scoring
    _, predictions, _ = _run(params, manifest, model, chunk_size=3)
    words = predictions.set_index("sample_id").loc["words"]
    alone = model.served.predict(None, pd.DataFrame({"text": ["only words"]})).iloc[0]
    assert words["label"] == alone["label"] and words["modalities"] == "text"
    assert [words[f"p.{c}"] for c in TINY_LABELS] == pytest.approx(list(alone["probabilities"].values()), abs=1e-6)
    assert words["text.share"] == pytest.approx(alone["explanation"]["text"]["share"], abs=1e-6)
    assert pd.isna(words["image.label"])


def test_a_labelled_manifest_gets_accuracy_and_macro_f1_over_the_scored_rows(scoring):
    params, manifest, model = scoring
    rows, predictions, rejects = _run(params, manifest, model, chunk_size=4)
    summary = batch.summarise(predictions, rejects, TINY_LABELS, rows=len(rows), chunks=3, seconds=1.0, model_uri="m")
    assert summary["rows"] == 10 and summary["scored"] == 7 and summary["rejected"] == 3
    assert summary["accuracy"] == pytest.approx((predictions["actual"] == predictions["label"]).mean())
    assert summary["labelled"] == 7 and 0 <= summary["macro_f1"] <= 1
    assert summary["rejects_by_reason"] == {"image: image file not found": 1, "image: unreadable image": 1,
                                            "no modality: every one is empty": 1}


def test_an_unlabelled_manifest_is_scored_without_scores(scoring, tmp_path):
    params, manifest, model = scoring
    unlabelled = pd.read_csv(manifest, dtype=str, keep_default_na=False).drop(columns=["label"])
    path = write_manifest(tmp_path / "batch" / "unlabelled.csv", unlabelled.to_dict("records"))
    rows, predictions, rejects = _run(params, path, model, chunk_size=4)
    summary = batch.summarise(predictions, rejects, TINY_LABELS, rows=len(rows), chunks=3, seconds=1.0, model_uri="m")
    assert len(predictions) == 7 and "actual" not in predictions and "accuracy" not in summary


def test_a_manifest_without_ids_or_any_modality_column_is_refused_naming_the_file(scoring, tmp_path):
    params, _, _ = scoring
    path = write_manifest(tmp_path / "batch" / "bad.csv", [{"name": "a", "label": "Flags"}])
    with pytest.raises(ManifestError, match=r"bad\.csv: needs the 'sample_id' column"):
        batch.read_batch(path, params)


def _today(params, **image_options):
    """params.yaml as it reads today, changed since the model was registered: the text column
    renamed and the image limits loosened."""
    changed = [dataclasses.replace(m, column="caption") if m.name == "text"
               else dataclasses.replace(m, options=image_options) for m in params.modalities]
    return dataclasses.replace(params, modalities=tuple(changed))


def test_the_manifest_is_read_by_the_models_own_columns_not_todays_params(scoring):
    params, manifest, model = scoring
    today = _today(params, size=32, max_pixels=10_000_000)
    rows = batch.read_batch(manifest, today, batch.served_modalities(model))
    predictions, _ = batch.score_chunk(model, rows, params.data.root)
    # the model reads 'text' (today's params would look for 'caption' and find no text at all)
    assert predictions.set_index("sample_id").loc["words", "modalities"] == "text"


def test_a_row_the_model_would_refuse_is_listed_by_the_models_limits_not_todays(scoring, tmp_path):
    params, _, model = scoring
    buffer = io.BytesIO()
    Image.new("RGB", (200, 200)).save(buffer, format="PNG")  # over the model's 10,000 pixels
    (params.data.root / "images" / "big.png").write_bytes(buffer.getvalue())
    path = write_manifest(tmp_path / "batch" / "big.csv", [
        {"sample_id": "big", "image": "images/big.png", "text": "", "label": TINY_LABELS[0]},
        {"sample_id": "ok", "image": "", "text": "fine", "label": TINY_LABELS[0]}])
    today = _today(params, size=32, max_pixels=10_000_000)  # today's limit would let it through
    rows = batch.read_batch(path, today, batch.served_modalities(model))
    predictions, rejects = batch.score_chunk(model, rows, params.data.root)
    assert predictions["sample_id"].tolist() == ["ok"]
    assert rejects["reason"].tolist() == ["image: decompression bomb: 200x200 pixels exceeds 10000"]
