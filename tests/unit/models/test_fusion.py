import pytest
import torch

from mmops.models.fusion import LateFusionClassifier


def _model():
    torch.manual_seed(0)
    return LateFusionClassifier({"image": 6, "text": 4}, 3, hidden_dim=8, dropout=0.0).eval()


def _features(n=5):
    return {"image": torch.randn(n, 6), "text": torch.randn(n, 4)}


def test_fused_output_is_a_probability_distribution():
    out = _model()(_features())
    assert torch.allclose(out["fused"].exp().sum(1), torch.ones(5), atol=1e-5)


def test_a_missing_modality_is_masked_not_an_error():
    model, feats = _model(), _features()
    present = {"image": torch.tensor([True, False, True, True, False]), "text": torch.tensor([True, True, False, True, True])}
    out = model(feats, present)
    # Where only one modality is present, the fused prediction is exactly that modality's.
    assert torch.allclose(out["fused"][1], out["text"][1], atol=1e-6)
    assert torch.allclose(out["fused"][2], out["image"][2], atol=1e-6)


def test_fusion_weights_move_the_mixture():
    model, feats = _model(), _features()
    log_probs = model(feats)
    only_image = model.fuse(log_probs, weights=torch.tensor([1.0, 0.0]))
    assert torch.allclose(only_image, log_probs["image"], atol=1e-5)


def test_a_sample_with_no_modality_is_refused():
    model = _model()
    present = {"image": torch.tensor([False]), "text": torch.tensor([False])}
    with pytest.raises(ValueError, match="at least one modality"):
        model(_features(1), present)
