"""A killed training run continues from its last epoch's checkpoint and ends exactly where an
uninterrupted run ends."""

import dataclasses

import pytest
import torch

from mmops.config import TrainParams
from mmops.training import train as training
from mmops.training.train import fit

CPU = torch.device("cpu")
# dropout, modality dropout and alignment: every random stream a resumed run must restore
PARAMS = TrainParams(epochs=6, batch_size=16, lr=0.01, modality_dropout=0.3, contrastive_weight=0.1,
                     contrastive_dim=8, fusions={"late": {"hidden_dim": 16, "dropout": 0.3}})


def _data(n: int, seed: int):
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % 3
    return {"image": torch.randn(n, 5, generator=g) + y[:, None], "text": torch.randn(n, 4, generator=g) - y[:, None]}, y


class Killed(Exception):
    """Stands for the process being killed (SIGKILL, a lost node) in the middle of an epoch."""


def _kill_during_epoch(monkeypatch, epoch: int) -> None:
    real, calls = training.train_one_epoch, {"n": 0}

    def one_epoch(model, optimizer, loader, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] == epoch:
            next(iter(loader))  # half-way: the data order's generator has already moved
            optimizer.step()
            raise Killed
        return real(model, optimizer, loader, *args, **kwargs)

    monkeypatch.setattr(training, "train_one_epoch", one_epoch)


def _same_weights(a, b) -> bool:
    return all(torch.equal(a.state_dict()[k], b.state_dict()[k]) for k in a.state_dict())


@pytest.mark.parametrize("fusion", ["late", "attention", "trust"])
def test_a_run_killed_mid_way_and_resumed_ends_with_the_uninterrupted_runs_weights(tmp_path, monkeypatch, fusion):
    (tr, ytr), (va, yva) = _data(96, 0), _data(48, 1)
    params = dataclasses.replace(PARAMS, fusion=fusion,
                                 fusions={**PARAMS.fusions, "attention": {"hidden_dim": 16, "heads": 2, "dropout": 0.3}})
    whole = fit(tr, ytr, va, yva, 3, params, CPU)
    path = tmp_path / "checkpoint.pt"
    with monkeypatch.context() as patch:
        _kill_during_epoch(patch, epoch=4)
        with pytest.raises(Killed):
            fit(tr, ytr, va, yva, 3, params, CPU, checkpoint=path)
    torch.manual_seed(1234)  # a new process: torch's global stream is not where the killed run left it
    resumed = fit(tr, ytr, va, yva, 3, params, CPU, checkpoint=path, resume=True)
    assert resumed.history == whole.history
    assert resumed.best_epoch == whole.best_epoch
    assert _same_weights(resumed.model, whole.model)


def test_without_resume_an_old_checkpoint_is_ignored_and_overwritten(tmp_path, monkeypatch):
    (tr, ytr), (va, yva) = _data(96, 0), _data(48, 1)
    path = tmp_path / "checkpoint.pt"
    with monkeypatch.context() as patch:
        _kill_during_epoch(patch, epoch=3)
        with pytest.raises(Killed):
            fit(tr, ytr, va, yva, 3, PARAMS, CPU, checkpoint=path)
    again = fit(tr, ytr, va, yva, 3, PARAMS, CPU, checkpoint=path)
    assert len(again.history) == PARAMS.epochs
    assert torch.load(path, weights_only=True)["epoch"] == PARAMS.epochs


def test_resuming_with_other_params_is_refused(tmp_path, monkeypatch):
    (tr, ytr), (va, yva) = _data(96, 0), _data(48, 1)
    path = tmp_path / "checkpoint.pt"
    with monkeypatch.context() as patch:
        _kill_during_epoch(patch, epoch=3)
        with pytest.raises(Killed):
            fit(tr, ytr, va, yva, 3, PARAMS, CPU, checkpoint=path)
    with pytest.raises(ValueError, match="checkpoint of another training run"):
        fit(tr, ytr, va, yva, 3, dataclasses.replace(PARAMS, lr=0.02), CPU, checkpoint=path, resume=True)


def test_resuming_on_other_training_data_is_refused(tmp_path, monkeypatch):
    (tr, ytr), (va, yva) = _data(96, 0), _data(48, 1)
    path = tmp_path / "checkpoint.pt"
    with monkeypatch.context() as patch:
        _kill_during_epoch(patch, epoch=3)
        with pytest.raises(Killed):
            fit(tr, ytr, va, yva, 3, PARAMS, CPU, checkpoint=path)
    tr["image"][0, 0] += 1
    with pytest.raises(ValueError, match="checkpoint of another training run"):
        fit(tr, ytr, va, yva, 3, PARAMS, CPU, checkpoint=path, resume=True)


def test_resume_without_a_checkpoint_starts_at_the_first_epoch(tmp_path):
    (tr, ytr), (va, yva) = _data(96, 0), _data(48, 1)
    resumed = fit(tr, ytr, va, yva, 3, PARAMS, CPU, checkpoint=tmp_path / "none.pt", resume=True)
    whole = fit(tr, ytr, va, yva, 3, PARAMS, CPU)
    assert _same_weights(resumed.model, whole.model)
