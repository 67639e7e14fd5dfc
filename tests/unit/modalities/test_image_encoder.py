"""The image encoders: what the multilevel one adds to EfficientNet-Lite0's pooled head, and
that its features never pass for the plain encoder's."""

from __future__ import annotations

import pytest
import torch

from mmops.config import ModalityParams
from mmops.features.cache import EncoderMismatch, check_encoders
from mmops.modalities.image import ImageModality

PICTURES = ["images/1f600.png", "images/1f436.png", "images/1f34e.png"]


def image(encoder: str) -> ImageModality:
    return ImageModality(ModalityParams(name="image", column="image", encoder=encoder, options={"size": 128}))


@pytest.fixture(scope="module")
def features(sample_dir) -> dict[str, torch.Tensor]:
    out = {}
    for name in ("efficientnet-lite0", "efficientnet-lite0-multilevel"):
        modality = image(name)
        encode = modality.encoder(torch.device("cpu"), torch.float32)
        out[name] = encode(PICTURES, batch_size=2, load=lambda p: modality.load(p, sample_dir))
    return out


def test_the_multilevel_encoder_keeps_the_plain_features_first_and_adds_three_pooled_blocks(features):
    plain, multi = features["efficientnet-lite0"], features["efficientnet-lite0-multilevel"]
    assert plain.shape == (3, 1280) and multi.shape == (3, 1280 + 80 + 112 + 192)
    assert torch.equal(multi[:, :1280], plain)
    levels = multi[:, 1280:]
    assert levels.abs().sum(dim=1).min() > 0 and not torch.allclose(levels[0], levels[1])


def test_each_encoder_declares_the_width_it_makes(features):
    for name, made in features.items():
        assert image(name).feature_dim == made.shape[1]


def test_multilevel_features_never_pass_for_the_plain_encoders():
    plain, multi = (image(n).identity(torch.float32, "cpu")
                    for n in ("efficientnet-lite0", "efficientnet-lite0-multilevel"))
    with pytest.raises(EncoderMismatch, match="image.encoder"):
        check_encoders({"image": multi}, {"image": plain}, made_by="the features", expected_by="the model")


def test_the_multilevel_encoder_fine_tunes_through_its_pooled_blocks():
    encoder, _ = image("efficientnet-lite0-multilevel").trainable()
    encoder.train().requires_grad_(True)
    out = encoder(torch.randn(2, 3, 128, 128))
    out[:, 1280:].sum().backward()  # the blocks' columns alone: the head plays no part
    assert out.shape == (2, 1664)
    stem, head = encoder.net._conv_stem.weight.grad, encoder.net._conv_head.weight.grad
    assert stem is not None and stem.abs().sum() > 0
    assert head is None or head.abs().sum() == 0
