import dataclasses

import pytest
import torch
from torch.nn import functional as F

from mmops.config import TrainParams
from mmops.evaluation.metrics import classification_metrics
from mmops.models.checkpoint import checkpoint, model_from_checkpoint
from mmops.models.predict import predict
from mmops.training.train import fit

CPU = torch.device("cpu")
PARAMS = TrainParams(epochs=15, batch_size=32, lr=0.01, fusions={"late": {"hidden_dim": 16, "dropout": 0.0}})


def _data(n: int, seed: int):
    """Three classes; the image features single out class 0, the text features class 2, so
    each modality alone confuses two classes and together they separate all three."""
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % 3
    image = torch.randn(n, 5, generator=g) * 0.3
    image[:, 0] += (y == 0).float() * 2
    text = torch.randn(n, 4, generator=g) * 0.3
    text[:, 0] += (y == 2).float() * 2
    return {"image": image, "text": text}, y


def _accuracy(log_probs, y):
    return classification_metrics(y.numpy(), log_probs.argmax(1).numpy(), 3)["accuracy"]


def test_fused_model_beats_each_modality_when_they_complement():
    (tr, ytr), (va, yva), (te, yte) = _data(300, 0), _data(150, 1), _data(150, 2)
    result = fit(tr, ytr, va, yva, 3, PARAMS, CPU)
    scores = {k: _accuracy(v, yte) for k, v in predict(result.model, te, CPU).log_probs.items()}
    assert scores["fused"] > max(scores["image"], scores["text"]) + 0.1
    assert scores["fused"] > 0.9


def test_the_kept_epoch_is_the_one_with_the_lowest_validation_loss_of_the_fused_prediction():
    # Few, noisy samples and a high learning rate: the heads overfit, so the best epoch is early.
    (tr, ytr), (va, yva) = _data(30, 0), _data(60, 1)
    tr = {m: t + torch.randn(t.shape, generator=torch.Generator().manual_seed(3)) for m, t in tr.items()}
    params = dataclasses.replace(PARAMS, epochs=40, lr=0.05, fusions={"late": {"hidden_dim": 64, "dropout": 0.0}})
    result = fit(tr, ytr, va, yva, 3, params, CPU)
    losses = [row["val_loss"] for row in result.history]
    assert result.best_epoch < params.epochs, "precondition: the last epoch is not the best"
    assert result.best_epoch == losses.index(min(losses)) + 1
    with result.model.uncalibrated():  # selection sees the raw outputs; the temperatures come after
        served_loss = float(F.nll_loss(predict(result.model, va, CPU).log_probs["fused"], yva))
    assert served_loss == pytest.approx(min(losses), abs=1e-5)
    calibrated_loss = float(F.nll_loss(predict(result.model, va, CPU).log_probs["fused"], yva))
    assert calibrated_loss <= served_loss + 1e-6  # fitted on this very split: never worse than T = 1


def test_fusion_weights_are_fitted_on_validation_towards_the_informative_modality():
    (tr, ytr), (va, yva) = _data(300, 0), _data(150, 1)
    g = torch.Generator().manual_seed(5)
    # the image separates all three classes; the text is pure noise
    tr["text"], va["text"] = torch.randn(300, 4, generator=g), torch.randn(150, 4, generator=g)
    tr["image"][:, 1] += (ytr == 1).float() * 2
    va["image"][:, 1] += (yva == 1).float() * 2
    result = fit(tr, ytr, va, yva, 3, PARAMS, CPU)
    assert result.model.fusion_weights[0] >= 0.75


def test_training_is_deterministic_for_a_seed():
    (tr, ytr), (va, yva) = _data(120, 0), _data(60, 1)
    a = fit(tr, ytr, va, yva, 3, PARAMS, CPU)
    b = fit(tr, ytr, va, yva, 3, PARAMS, CPU)
    for key, value in a.model.state_dict().items():
        assert torch.equal(value, b.model.state_dict()[key]), key
    assert a.history == b.history


def test_an_alignment_weight_trains_a_projection_whose_loss_falls_and_is_recorded():
    (tr, ytr), (va, yva) = _data(300, 0), _data(150, 1)
    params = dataclasses.replace(PARAMS, contrastive_weight=0.5, contrastive_dim=8)
    result = fit(tr, ytr, va, yva, 3, params, CPU)
    align = [row["train_align_loss"] for row in result.history]
    assert result.model.alignment is not None and result.model.alignment.dim == 8
    assert align[-1] < align[0]
    assert all(row["train_align_loss"] == 0 for row in fit(tr, ytr, va, yva, 3, PARAMS, CPU).history)


def test_label_smoothing_makes_the_served_answer_less_confident():
    (tr, ytr), (va, yva) = _data(300, 0), _data(150, 1)
    plain = fit(tr, ytr, va, yva, 3, PARAMS, CPU).model
    smoothed = fit(tr, ytr, va, yva, 3, dataclasses.replace(PARAMS, label_smoothing=0.3), CPU).model
    confidence = []
    for m in (plain, smoothed):
        with m.uncalibrated():  # what training learned, before temperature scaling evens the two out
            confidence.append(float(predict(m, va, CPU).log_probs["fused"].exp().max(1).values.mean()))
    assert confidence[1] < confidence[0] - 0.05


@pytest.mark.parametrize(("change", "message"), [
    ({"optimizer": "sgd"}, "train.optimizer must be adam or adamw"),
    ({"label_smoothing": 1.0}, "label_smoothing < 1"),
    ({"contrastive_weight": -0.1}, "contrastive_weight >= 0"),
])
def test_training_options_out_of_range_are_refused_by_name(change, message):
    with pytest.raises(ValueError, match=message):
        dataclasses.replace(PARAMS, **change)


def test_checkpoint_stores_the_architecture_and_round_trips(tmp_path):
    from mmops.artifacts import load_torch, save_torch

    (tr, ytr), (va, yva) = _data(120, 0), _data(60, 1)
    result = fit(tr, ytr, va, yva, 3, PARAMS, CPU)
    ckpt = checkpoint(result.model, ["a", "b", "c"], epoch=result.best_epoch, encoders={"image": {"dim": 5}}, modalities=[{"name": "image"}])
    path = save_torch(tmp_path / "model.pt", ckpt)
    loaded = load_torch(path)
    assert loaded["fusion"] == {"method": "late", "arguments": {"hidden_dim": 16, "dropout": 0.0}, "alignment": None}
    restored = model_from_checkpoint(loaded)
    before, after = predict(result.model, va, CPU).log_probs, predict(restored, va, CPU).log_probs
    assert torch.allclose(before["fused"], after["fused"])


def test_macro_f1_counts_a_never_predicted_class_as_zero():
    import numpy as np

    scores = classification_metrics(np.array([0, 1, 2]), np.array([0, 1, 1]), 4)
    assert scores["accuracy"] == 2 / 3
    assert abs(scores["macro_f1"] - (1 + 2 / 3 + 0 + 0) / 4) < 1e-9


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_train_smoke_gpu():
    from mmops.device import pick_device

    device = pick_device()
    (tr, ytr), (va, yva) = _data(120, 0), _data(60, 1)
    result = fit(tr, ytr, va, yva, 3, PARAMS, device)
    assert predict(result.model, va, device).log_probs["fused"].shape == (60, 3)


def test_a_log_gets_one_line_for_a_whole_training_and_no_bar(caplog, capsys):
    import logging

    (tr, ytr), (va, yva) = _data(120, 0), _data(60, 1)
    with caplog.at_level(logging.INFO, logger="mmops"):
        fit(tr, ytr, va, yva, 3, PARAMS, CPU)
    lines = [r.getMessage() for r in caplog.records if r.levelno >= logging.INFO]
    assert len(lines) == 1 and lines[0].startswith(f"train late: {PARAMS.epochs} epochs in ")
    assert "samples/s" in lines[0] and "kept epoch" in lines[0]
    assert capsys.readouterr().err == ""  # stderr is not a terminal here: no bar


def test_a_terminal_gets_a_live_bar_with_its_rate():
    import io

    from mmops.progress import progress

    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    screen = Terminal()
    bar = progress(3, "train late", "epoch", file=screen)
    bar.update(3)
    bar.close()
    assert "train late" in screen.getvalue() and "epoch" in screen.getvalue()
    assert progress(3, "x", "epoch", file=io.StringIO()).disable  # not a terminal: no bar


def test_label_smoothing_is_the_usual_smoothed_cross_entropy():
    from mmops.models.fusion.parts import label_loss

    logits, target = torch.randn(8, 5, generator=torch.Generator().manual_seed(0)), torch.arange(8) % 5
    expected = F.cross_entropy(logits, target, label_smoothing=0.2)
    assert torch.allclose(label_loss(F.log_softmax(logits, dim=1), target, 0.2), expected)


def test_alignment_on_concat_leaves_its_classifier_exactly_as_without():
    # concat has no per-modality layer: alignment trains only its own projections, and draws
    # no randomness the classifier's training would see, so the ablation is exact
    (tr, ytr), (va, yva) = _data(120, 0), _data(60, 1)
    base = dataclasses.replace(PARAMS, fusion="concat", fusions={"concat": {"hidden_dim": 16, "dropout": 0.2}})
    plain = fit(tr, ytr, va, yva, 3, base, CPU).model
    aligned = fit(tr, ytr, va, yva, 3, dataclasses.replace(base, contrastive_weight=0.5), CPU).model
    assert torch.equal(predict(plain, va, CPU).log_probs["fused"], predict(aligned, va, CPU).log_probs["fused"])
