"""Temperature scaling: one temperature per output, fitted on validation, carried by the model."""

import numpy as np
import pytest
import torch
from torch.nn import functional as F

from mmops.evaluation.calibration import expected_calibration_error
from mmops.models.checkpoint import checkpoint, model_from_checkpoint
from mmops.models.fusion import all_present, build_fusion
from mmops.models.temperature import fit_temperature


def _overconfident(n=4000, classes=5, sharpen=3.0, seed=0):
    """Labels drawn from softmax(z), and the log-probabilities of a model `sharpen` times too sure."""
    gen = torch.Generator().manual_seed(seed)
    logits = torch.randn(n, classes, generator=gen) * 1.5
    target = torch.multinomial(logits.softmax(1), 1, generator=gen).squeeze(1)
    return F.log_softmax(logits * sharpen, 1), target


def _model():
    torch.manual_seed(0)
    return build_fusion("late", {"image": 6, "text": 4}, 3, hidden_dim=8, dropout=0.0).eval()


def test_the_fitted_temperature_undoes_a_known_overconfidence():
    log_probs, target = _overconfident(sharpen=3.0)
    assert fit_temperature(log_probs, target) == pytest.approx(3.0, rel=0.1)


def test_a_calibrated_model_has_a_lower_ece_and_the_same_answers():
    log_probs, target = _overconfident()
    temperature = fit_temperature(log_probs[:2000], target[:2000])  # fitted on one half, judged on the other
    held, y = log_probs[2000:], target[2000:].numpy()
    calibrated = F.log_softmax(held / temperature, 1)
    assert expected_calibration_error(calibrated.exp().numpy(), y) < expected_calibration_error(held.exp().numpy(), y) / 2
    assert torch.equal(calibrated.argmax(1), held.argmax(1))


def test_each_modality_is_calibrated_on_the_validation_rows_that_have_it():
    model = _model()
    log_probs, target = _overconfident(n=400, classes=3, sharpen=3.0)
    present = {"image": torch.arange(400) < 200, "text": torch.ones(400, dtype=torch.bool)}
    wild = log_probs.clone()
    wild[200:] = F.log_softmax(torch.randn(200, 3) * 50, 1)  # rows without the image: must not count
    fitted = model.calibrate({"image": wild, "text": log_probs, "fused": log_probs}, target, present)
    assert fitted["image"] == fit_temperature(log_probs[:200], target[:200])
    assert set(fitted) == {"image", "text", "fused"} and model.temperatures == fitted


def test_the_model_applies_its_temperatures_to_every_output_and_uncalibrated_lifts_them():
    model, feats = _model(), {"image": torch.randn(8, 6), "text": torch.randn(8, 4)}
    raw = model.log_probs(feats, all_present(feats))
    model.temperatures = {"image": 2.0, "text": 0.5, "fused": 3.0}
    out = model.log_probs(feats, all_present(feats))
    for name, t in model.temperatures.items():
        assert torch.allclose(out[name], F.log_softmax(raw[name] / t, 1), atol=1e-5)
    with model.uncalibrated():
        assert torch.allclose(model.log_probs(feats, all_present(feats))["fused"], raw["fused"])
    assert model.temperatures["fused"] == 3.0


def test_the_checkpoint_carries_the_temperatures():
    model = _model()
    model.temperatures = {"image": 1.7, "text": 0.9, "fused": 1.2}
    ckpt = checkpoint(model, ["a", "b", "c"], epoch=1, encoders={}, modalities=[])
    assert model_from_checkpoint(ckpt).temperatures == model.temperatures


def test_a_model_saved_before_calibration_loads_uncalibrated():
    ckpt = checkpoint(_model(), ["a", "b", "c"], epoch=1, encoders={}, modalities=[])
    del ckpt["temperatures"]
    assert model_from_checkpoint(ckpt).temperatures == {}


def test_training_returns_a_model_calibrated_on_validation():
    from mmops.config import TrainParams
    from mmops.training.train import fit

    gen = torch.Generator().manual_seed(0)
    y = torch.randint(0, 3, (120,), generator=gen)
    feats = {"image": torch.randn(120, 6, generator=gen) + y[:, None], "text": torch.randn(120, 4, generator=gen)}
    tr, va = slice(0, 80), slice(80, 120)
    result = fit({m: t[tr] for m, t in feats.items()}, y[tr], {m: t[va] for m, t in feats.items()}, y[va], 3,
                 TrainParams(epochs=3, batch_size=32, contrastive_weight=0.0), torch.device("cpu"))
    assert set(result.model.temperatures) == {"image", "text", "fused"}
    assert all(np.isfinite(t) and t > 0 for t in result.model.temperatures.values())
