"""Behaviour of the model trained by the real pipeline on the full sample (default params)."""

from __future__ import annotations

import json

import pandas as pd
import pytest
import torch
from PIL import ImageOps

from mmops import artifacts, stages
from mmops.config import Layout
from mmops.modalities.text_encoder import TextEncoder
from mmops.models.checkpoint import model_from_checkpoint
from mmops.models.predict import predict
from tests.conftest import make_params, modalities_of

pytestmark = pytest.mark.slow
CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def trained(sample_dir, tmp_path_factory):
    params = make_params(sample_dir)
    layout = Layout(tmp_path_factory.mktemp("model") / "artifacts")
    for name in ("validate", "clean", "split", "featurize", "train", "evaluate"):
        getattr(stages, name)(params, layout)
    model = model_from_checkpoint(artifacts.load_torch(layout.model))
    return params, layout, model


def test_fused_beats_each_single_modality_on_the_test_split(trained):
    _, layout, _ = trained
    scores = json.loads(layout.metrics.read_text())["test"]
    for metric in ("accuracy", "macro_f1"):
        assert scores["fused"][metric] > scores["text"][metric], metric
        assert scores["fused"][metric] > scores["image"][metric], metric


def test_horizontal_flip_rarely_changes_the_image_prediction(trained):
    params, layout, model = trained
    frame = pd.read_csv(layout.split_manifest, dtype=str, keep_default_na=False).query("split == 'test'")
    images = [modalities_of(params)[0].load(p, params.data.root) for p in frame["image"]]
    encode = modalities_of(params)[0].encoder(CPU, torch.float32)
    plain = encode(images, batch_size=64)
    flipped = encode([ImageOps.mirror(i) for i in images], batch_size=64)
    text = torch.zeros(len(images), 384)
    only_image = {"image": torch.ones(len(images), dtype=torch.bool), "text": torch.zeros(len(images), dtype=torch.bool)}
    a = predict(model, {"image": plain, "text": text}, CPU, only_image).log_probs["fused"].argmax(1)
    b = predict(model, {"image": flipped, "text": text}, CPU, only_image).log_probs["fused"].argmax(1)
    assert (a == b).float().mean() >= 0.9


@pytest.mark.parametrize(("text", "label"), [
    ("flag: japan", "Flags"),
    ("slice of pizza", "Food & Drink"),
    ("dog face", "Animals & Nature"),
    ("soccer ball", "Activities"),
    ("smiling face with tears", "Smileys & Emotion"),
])
def test_text_alone_gets_obvious_cases_right(trained, text, label):
    params, _, model = trained
    features = TextEncoder(device=CPU)([text], batch_size=1)
    present = {"image": torch.tensor([False]), "text": torch.tensor([True])}
    fused = predict(model, {"image": torch.zeros(1, 1280), "text": features}, CPU, present).log_probs["fused"]
    assert params.data.labels[int(fused.argmax(1))] == label
