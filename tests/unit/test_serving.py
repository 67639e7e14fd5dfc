"""The pyfunc's handling of raw inputs (the full registry path is in tests/integration)."""

import base64
import io
from types import SimpleNamespace

import pandas as pd
import pytest
import torch
from mlflow.exceptions import MlflowException
from PIL import Image

from mmops.artifacts import save_torch
from mmops.config import TrainParams
from mmops.models.fusion import LateFusionClassifier
from mmops.serving.pyfunc import MultimodalClassifier
from mmops.training.train import FitResult, checkpoint

CLASSES = ["a", "b", "c"]


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    torch.manual_seed(0)
    params = TrainParams(hidden_dim=8)
    model = LateFusionClassifier({"image": 1280, "text": 384}, 3, hidden_dim=8, dropout=0.0)
    path = save_torch(tmp_path_factory.mktemp("ckpt") / "model.pt",
                      checkpoint(FitResult(model=model, best_epoch=1), CLASSES, params, image_size=32,
                                 max_image_pixels=10_000))
    pyfunc = MultimodalClassifier()
    pyfunc.load_context(SimpleNamespace(artifacts={"checkpoint": str(path)}))
    return pyfunc


def _png(size: int = 20) -> str:
    buffer = io.BytesIO()
    Image.new("RGBA", (size, size), (200, 10, 10, 255)).save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode()


def test_either_modality_may_be_missing_per_record(served):
    out = served.predict(None, pd.DataFrame({"image": [_png(), None, _png()], "text": ["red", "blue", ""]}))
    assert list(out.columns) == ["label", "confidence"]
    assert len(out) == 3 and set(out["label"]) <= set(CLASSES)


def test_a_column_may_be_left_out_entirely(served):
    assert len(served.predict(None, pd.DataFrame({"text": ["only text"]}))) == 1
    assert len(served.predict(None, pd.DataFrame({"image": [_png()]}))) == 1


def test_a_record_with_neither_modality_is_refused_by_index(served):
    with pytest.raises(MlflowException, match=r"record\(s\) \[1\]: need an 'image'"):
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
