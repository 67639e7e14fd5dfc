"""train.mode finetune: the image encoder trained end to end with the head on a small real
subset; the model carries its own encoder, which evaluate and serving use, and which a
pretrained-only identity never passes for."""

import dataclasses
import shutil
from types import SimpleNamespace

import pandas as pd
import pytest
import torch

from mmops import artifacts, stages
from mmops.config import Layout
from mmops.features.cache import EncoderMismatch
from mmops.modalities.base import weights_digest
from mmops.models.predict import predict
from tests.conftest import make_params, modalities_of, subset_of_sample

CPU = torch.device("cpu")


# 4 emoji a class; a barely probed head (1 epoch), so that fine-tuning has room to win on validation
SECTIONS = {"split": {"val_fraction": 0.25, "test_fraction": 0.25},
            "augment": {"enabled": True, "strength": {"image": 0.5, "text": 0.5}},
            "train": {"mode": "finetune", "epochs": 1, "finetune_epochs": 2, "batch_size": 8, "encoder_lr": 0.005}}


class Killed(Exception):
    """Stands for the process being killed (SIGKILL, a lost node) in the middle of an epoch."""


@pytest.fixture(scope="module")
def tuned(sample_dir, tmp_path_factory):
    """A model fine-tuned for 2 epochs on 4 emoji a class, with the frozen model of the same data."""
    tmp = tmp_path_factory.mktemp("finetune")
    root = subset_of_sample(sample_dir, tmp / "data", per_class=4)
    params = make_params(root, **SECTIONS)
    layout = Layout(tmp / "artifacts")
    for name in ("clean", "split", "augment", "featurize"):
        getattr(stages, name)(params, layout, **({"device": "cpu"} if name == "featurize" else {}))
    result = stages.train(params, layout, device="cpu")
    return params, layout, result


def _pretrained(params):
    [image] = [m for m in modalities_of(params) if m.name == "image"]
    encoder, _ = image.trainable()
    return image, encoder.state_dict()


def test_the_model_carries_its_fine_tuned_encoder_and_its_hash(tuned):
    params, layout, result = tuned
    assert result["mode"] == "finetune" and result["fine_tuned"] == ["image"]
    ckpt = artifacts.load_torch(layout.model)
    weights = ckpt["encoder_weights"]["image"]
    image, pretrained = _pretrained(params)
    assert set(weights) == set(pretrained)
    changed = [k for k in weights if weights[k].is_floating_point() and not torch.equal(weights[k], pretrained[k])]
    assert changed, "the encoder learned nothing"
    assert ckpt["encoders"]["image"]["weights"] == weights_digest(weights)
    assert "weights" not in ckpt["encoders"]["text"]  # the text encoder stays the packaged one
    assert len(pd.read_csv(layout.history)) == params.train.finetune_epochs


def test_batchnorm_keeps_its_pretrained_statistics(tuned):
    params, layout, _ = tuned
    weights = artifacts.load_torch(layout.model)["encoder_weights"]["image"]
    _, pretrained = _pretrained(params)
    stats = [k for k in weights if k.endswith(("running_mean", "running_var"))]
    assert stats and all(torch.equal(weights[k], pretrained[k]) for k in stats)


def _image_only(ckpt, features: torch.Tensor) -> torch.Tensor:
    """The model's image-only log-probabilities of `features` (the text masked, as evaluate scores it)."""
    from mmops.models.checkpoint import model_from_checkpoint

    n = len(features)
    return predict(model_from_checkpoint(ckpt), {"image": features, "text": torch.zeros(n, 384)}, CPU,
                   {"image": torch.ones(n, dtype=torch.bool), "text": torch.zeros(n, dtype=torch.bool)}).log_probs["image"]


def test_evaluate_scores_the_test_images_through_the_fine_tuned_encoder(tuned):
    params, layout, _ = tuned
    metrics = stages.evaluate(params, layout)
    ckpt = artifacts.load_torch(layout.model)
    frame = artifacts.read_csv(layout.split_manifest)
    test = frame[frame["split"] == "test"]
    image = [m for m in modalities_of(params) if m.name == "image"][0]
    tuned_features = image.encoder(CPU, torch.float32, ckpt["encoder_weights"]["image"])(
        list(test["image"]), batch_size=16, load=lambda v: image.load(v, params.data.root))
    pretrained_features = image.encoder(CPU, torch.float32)(
        list(test["image"]), batch_size=16, load=lambda v: image.load(v, params.data.root))
    assert not torch.allclose(tuned_features, pretrained_features)
    y = torch.tensor([list(params.data.labels).index(label) for label in test["label"]])
    image_only = _image_only(ckpt, tuned_features)
    assert metrics["test"]["image"]["accuracy"] == pytest.approx(float((image_only.argmax(1) == y).float().mean()))
    answers = pd.read_csv(layout.predictions)  # each row's image-only confidence: from the tuned features
    assert answers["confidence_image"].tolist() == pytest.approx(image_only.exp().max(1).values.tolist(), abs=1e-4)


def test_the_shift_stage_scores_a_set_through_the_fine_tuned_encoder_alone(tuned, twitter_dir, tmp_path, monkeypatch):
    from mmops.evaluation.shift import score_manifest
    from mmops.modalities.image import ImageModality

    params, layout, _ = tuned
    ckpt = artifacts.load_torch(layout.model)
    split = artifacts.read_csv(layout.split_manifest)
    drawn = subset_of_sample(twitter_dir, tmp_path / "twitter", per_class=4, ids=set(split["sample_id"]))
    rows = artifacts.read_csv(drawn / "metadata.csv")
    image = [m for m in modalities_of(params) if m.name == "image"][0]
    features = image.encoder(CPU, torch.float32, ckpt["encoder_weights"]["image"])(
        list(rows["image"]), batch_size=16, load=lambda v: image.load(v, drawn))
    image_only = _image_only(ckpt, features)
    y = torch.tensor([list(params.data.labels).index(label) for label in rows["label"]])
    built, encoder = [], ImageModality.encoder
    monkeypatch.setattr(ImageModality, "encoder", lambda self, device, dtype, weights=None:
                        built.append(weights is not None) or encoder(self, device, dtype, weights))
    report = score_manifest(params, drawn / "metadata.csv", ckpt, set())
    assert built == [True]  # the model's own encoder, and the pretrained one not even for nothing
    assert report["all"]["models"]["image"]["accuracy"] == pytest.approx(
        float((image_only.argmax(1) == y).float().mean()))


def test_serving_encodes_with_the_models_own_encoder_and_answers_as_evaluate_does(tuned):
    from mmops.modalities import requests_for
    from mmops.serving.pyfunc import MultimodalClassifier

    params, layout, _ = tuned
    stages.evaluate(params, layout)
    served = MultimodalClassifier()
    served.load_context(SimpleNamespace(artifacts={"checkpoint": str(layout.model)}, model_config={}))
    frame = artifacts.read_csv(layout.split_manifest)
    test = frame[frame["split"] == "test"].reset_index(drop=True)
    requests = requests_for(test, modalities_of(params), params.data.root)
    expected = artifacts.read_csv(layout.predictions)
    out = served.predict(None, requests)
    assert list(out["label"]) == list(expected["pred_fused"])
    image_only = served.predict(None, requests[["image"]])  # the image's answer alone: its encoder's doing
    assert list(image_only["confidence"]) == pytest.approx(expected["confidence_image"].astype(float).tolist(),
                                                           abs=2e-4)


def test_a_pretrained_only_identity_does_not_pass_for_a_fine_tuned_model(tuned, tmp_path):
    from mmops.serving.pyfunc import MultimodalClassifier

    params, layout, _ = tuned
    ckpt = artifacts.load_torch(layout.model)
    ckpt["encoder_weights"] = {}  # the weights gone: serving would fall back to the packaged encoder
    artifacts.save_torch(tmp_path / "model.pt", ckpt)
    with pytest.raises(EncoderMismatch, match="image.weights"):
        MultimodalClassifier().load_context(SimpleNamespace(artifacts={"checkpoint": str(tmp_path / "model.pt")},
                                                            model_config={}))
    tampered = artifacts.load_torch(layout.model)
    first = next(k for k, v in tampered["encoder_weights"]["image"].items() if v.is_floating_point())
    tampered["encoder_weights"]["image"][first] += 1  # weights that are not the ones the model recorded
    artifacts.save_torch(tmp_path / "model.pt", tampered)
    with pytest.raises(EncoderMismatch, match="image.weights"):
        MultimodalClassifier().load_context(SimpleNamespace(artifacts={"checkpoint": str(tmp_path / "model.pt")},
                                                            model_config={}))


def _copy(layout: Layout, dest) -> Layout:
    """The fixture's artifacts in `dest`, for a test that trains again without touching them."""
    shutil.copytree(layout.root, dest / "artifacts")
    return Layout(dest / "artifacts")


def _kill_in_epoch(patch, epoch: int) -> None:
    """Make fine-tuning die half-way through `epoch`, after one optimiser step."""
    from mmops.training import finetune

    real, calls = finetune._train_epoch, {"n": 0}

    def train_epoch(step, model, optimizer, loader, *args):
        calls["n"] += 1
        if calls["n"] == epoch:
            next(iter(loader))  # the data order's generator has already moved
            optimizer.step()
            raise Killed
        return real(step, model, optimizer, loader, *args)

    patch.setattr(finetune, "_train_epoch", train_epoch)


def _same(a, b) -> bool:
    """Nested dicts of tensors, equal bit for bit."""
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    return torch.equal(a, b) if isinstance(a, torch.Tensor) else a == b


def test_a_fine_tuning_run_killed_mid_way_and_resumed_ends_as_the_uninterrupted_run(tuned, tmp_path, monkeypatch):
    params, layout, _ = tuned
    params = dataclasses.replace(params, train=dataclasses.replace(params.train, finetune_epochs=3))
    layout = _copy(layout, tmp_path)
    stages.train(params, layout, device="cpu")
    whole, whole_history = artifacts.load_torch(layout.model), pd.read_csv(layout.history)
    with monkeypatch.context() as patch:
        _kill_in_epoch(patch, 2)
        with pytest.raises(Killed):
            stages.train(params, layout, device="cpu")
    assert artifacts.load_torch(layout.train_checkpoint)["epoch"] == 1
    torch.manual_seed(1234)  # a new process: torch's global stream is not where the killed run left it
    trained = []
    with monkeypatch.context() as patch:
        from mmops.training import finetune

        real = finetune._train_epoch
        patch.setattr(finetune, "_train_epoch", lambda *args: trained.append(1) or real(*args))
        stages.train(params, layout, device="cpu", resume=True)
    assert len(trained) == 2  # epochs 2 and 3: it continued, it did not start afresh
    resumed = artifacts.load_torch(layout.model)
    pd.testing.assert_frame_equal(pd.read_csv(layout.history), whole_history)
    assert resumed["epoch"] == whole["epoch"]
    assert _same(resumed["model"], whole["model"]) and _same(resumed["encoder_weights"], whole["encoder_weights"])
    assert not layout.train_checkpoint.exists()  # the run is complete


def test_resuming_a_fine_tuning_run_with_other_augmentation_is_refused(tuned, tmp_path, monkeypatch):
    params, layout, _ = tuned
    layout = _copy(layout, tmp_path)
    with monkeypatch.context() as patch:
        _kill_in_epoch(patch, 2)
        with pytest.raises(Killed):
            stages.train(params, layout, device="cpu")
    other = dataclasses.replace(params, augment=dataclasses.replace(
        params.augment, strength={**params.augment.strength, "image": 0.9}))
    with pytest.raises(ValueError, match="checkpoint of another training run"):
        stages.train(other, layout, device="cpu", resume=True)


@pytest.mark.slow
def test_fine_tuning_under_torchrun_on_two_processes_matches_one_process_and_only_rank_0_writes(tuned, tmp_path):
    import subprocess
    import sys

    import yaml

    from tests.conftest import repo_params, venv_env

    params, layout, _ = tuned
    layout = _copy(layout, tmp_path)
    # the default encoder rate (the fixture's diverges on purpose: the curves would be noise)
    sections = {**SECTIONS, "train": {**SECTIONS["train"], "encoder_lr": 0.0001, "finetune_epochs": 3}}
    raw = repo_params(data={"root": str(params.data.root), "manifest": str(params.data.manifest)},
                      clean={"min_per_class": 1}, **sections)
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(raw))
    stage = ["-m", "mmops.cli", "stage", "train", "--params", "params.yaml", "--artifacts", "artifacts", "--device", "cpu"]

    one = subprocess.run([sys.executable, *stage], cwd=tmp_path, env=venv_env(), capture_output=True, text=True)
    assert one.returncode == 0, one.stderr
    single = pd.read_csv(layout.history)
    layout.model.unlink()
    layout.history.unlink()

    two = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
                          *stage], cwd=tmp_path, env=venv_env(), capture_output=True, text=True, timeout=600)
    assert two.returncode == 0, two.stderr
    assert two.stderr.count("finetune late (image)") == 1  # rank 0 alone logs the run
    assert "2 processes; kept epoch" in two.stderr
    assert '"rank": 1' in two.stdout and '"processes": 2' in two.stdout
    # (each process also checks at the end that all hold the same weights, or the run fails)
    assert layout.model.exists() and not layout.train_checkpoint.exists()
    assert artifacts.load_torch(layout.model)["encoder_weights"]["image"]
    double = pd.read_csv(layout.history)
    # The same global batch and learning rates, another order of samples (and of augmented
    # views): the validation curves agree within a stated tolerance, not bit for bit (the
    # training losses of 3 steps an epoch are too noisy to compare).
    assert list(double.columns) == list(single.columns) and len(double) == len(single) == 3
    assert (double["val_loss"] - single["val_loss"]).abs().max() < 0.1


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_finetune_runs_on_cuda_in_bf16(tuned, tmp_path):
    params, layout, _ = tuned
    result = stages.train(params, layout, device="cuda")
    assert result["device"].startswith("cuda")
    ckpt = artifacts.load_torch(layout.model)
    assert ckpt["encoder_weights"]["image"]


def test_fine_tuning_learns_from_a_drawing_sets_views_of_the_training_samples(tuned, twitter_dir, tmp_path, monkeypatch):
    """augment.drawings: Twitter's drawings of the training emoji are fine-tuning rows beside
    Google's, their pictures read from the augment stage's views (the frozen mode's augmented
    views are not: fine-tuning augments on the fly)."""
    from mmops.modalities.image import ImageModality

    params, layout, _ = tuned
    layout = _copy(layout, tmp_path)
    split = artifacts.read_csv(layout.split_manifest)
    drawn = subset_of_sample(twitter_dir, tmp_path / "twitter", per_class=4, ids=set(split["sample_id"]))
    params = dataclasses.replace(params, augment=dataclasses.replace(
        params.augment, drawings={"twitter": str(drawn / "metadata.csv")}))
    stages.augment(params, layout)
    stages.featurize(params, layout, device="cpu")
    roots = []
    load = ImageModality.load
    monkeypatch.setattr(ImageModality, "load", lambda self, value, root: roots.append(root) or load(self, value, root))
    result = stages.train(params, layout, device="cpu")
    train_rows = int((split["split"] == "train").sum())
    assert result["train_samples"] == 2 * train_rows  # Twitter drew every one of them
    assert roots.count(layout.augment / "views") == params.train.finetune_epochs * train_rows  # once an epoch


def _selecting_on_twitter(tuned, twitter_dir, tmp_path):
    """The fixture's params and a copy of its artifacts, with Twitter's drawings of the subset
    as a shift set that `train.select_on` names, at the default encoder rate (the fixture's
    wrecks the image, and fused then answers from the captions alone, the same in both sets)."""
    params, layout, _ = tuned
    layout = _copy(layout, tmp_path)
    split = artifacts.read_csv(layout.split_manifest)
    drawn = subset_of_sample(twitter_dir, tmp_path / "twitter", per_class=4, ids=set(split["sample_id"]))
    params = dataclasses.replace(params, shift=dataclasses.replace(params.shift, sets={"twitter": str(drawn / "metadata.csv")}),
                                 train=dataclasses.replace(params.train, select_on=("twitter",), encoder_lr=0.0001))
    return params, layout, split


def test_select_on_chooses_the_epoch_on_the_val_split_and_a_sets_drawings_of_the_val_ids(
        tuned, twitter_dir, tmp_path, monkeypatch):
    """train.select_on: each epoch (and the probe, epoch 0) is judged by the mean of the val
    split's fused loss and the set's, on that set's rows of val ids only, and the lowest is kept."""
    from mmops.training import finetune

    params, layout, split = _selecting_on_twitter(tuned, twitter_dir, tmp_path)
    seen, real = {}, finetune.fit_finetune

    def spy(*args, **kw):
        seen["select"], seen["result"] = kw["select"], real(*args, **kw)
        return seen["result"]

    monkeypatch.setattr(finetune, "fit_finetune", spy)
    stages.train(params, layout, device="cpu")
    val_ids = set(split.loc[split["split"] == "val", "sample_id"])
    assert sorted(seen["select"]["twitter"].ids) == sorted(val_ids)  # Twitter drew them all; no train or test id
    # its pictures are encoded each epoch by the encoder being tuned, never first by the pretrained one
    assert not seen["select"]["twitter"].features["image"].any() and seen["select"]["twitter"].present["image"].all()
    result = seen["result"]
    assert {"select_twitter_loss", "select_twitter_acc", "select_twitter_acc_image"} <= set(pd.read_csv(layout.history))
    history = pd.DataFrame(result.history)  # unrounded (history.csv keeps 4 decimals)
    assert (history["select_twitter_loss"] - history["val_loss"]).abs().min() > 1e-3  # the drawings count
    expected = (history["val_loss"] + history["select_twitter_loss"]) / 2
    assert result.selection_losses[1:] == pytest.approx(expected.tolist())
    assert result.best_epoch == min(range(len(result.selection_losses)), key=result.selection_losses.__getitem__)
    assert artifacts.load_torch(layout.model)["epoch"] == result.best_epoch


def test_select_on_changes_which_epoch_is_kept_not_what_is_trained(tuned, twitter_dir, tmp_path):
    params, layout, _ = _selecting_on_twitter(tuned, twitter_dir, tmp_path)
    stages.train(params, layout, device="cpu")
    selecting = pd.read_csv(layout.history)
    stages.train(dataclasses.replace(params, train=dataclasses.replace(params.train, select_on=())), layout,
                 device="cpu")
    plain = pd.read_csv(layout.history)
    pd.testing.assert_frame_equal(selecting[plain.columns], plain)  # every epoch the same, bit for bit
