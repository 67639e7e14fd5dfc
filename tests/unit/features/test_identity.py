"""The encoder identity: what made a modality's features, compared wherever they are used."""

from __future__ import annotations

import pytest
import torch

from mmops.features.cache import EncoderMismatch, check_encoders
from tests.conftest import make_params, modalities_of


@pytest.fixture
def text(tmp_path):
    return next(m for m in modalities_of(make_params(tmp_path / "data")) if m.name == "text")


def test_the_identity_records_the_kind_of_device_the_features_were_made_on(text):
    assert text.identity(torch.bfloat16, torch.device("cuda", 1))["device"] == "cuda"
    assert text.identity(torch.bfloat16, "cpu")["device"] == "cpu"


def test_features_made_on_cuda_in_bf16_do_not_pass_for_cpu_bf16(text):
    with pytest.raises(EncoderMismatch, match=r"text\.device: the features has 'cuda', the model has 'cpu'"):
        check_encoders({"text": text.identity(torch.bfloat16, "cuda")}, {"text": text.identity(torch.bfloat16, "cpu")},
                       made_by="the features", expected_by="the model")


def test_an_identity_missing_a_field_the_other_side_records_is_a_mismatch(text):
    old = {k: v for k, v in text.identity(torch.float32, "cpu").items() if k != "device"}  # made before the field
    with pytest.raises(EncoderMismatch, match=r"text\.device: the features has '\(none\)', the model has 'cpu'"):
        check_encoders({"text": old}, {"text": text.identity(torch.float32, "cpu")},
                       made_by="the features", expected_by="the model")
    with pytest.raises(EncoderMismatch, match=r"text\.device: the features has 'cpu', the model has '\(none\)'"):
        check_encoders({"text": text.identity(torch.float32, "cpu")}, {"text": old},
                       made_by="the features", expected_by="the model")
