"""train and evaluate on a crafted feature cache: alignment with the split manifest, the checks
on what made the features, and what evaluate reads and writes."""

import pandas as pd
import pytest
import torch

from mmops import artifacts, stages
from mmops.cli import main
from mmops.config import Layout
from mmops.features.cache import EncoderMismatch, FeatureCache
from mmops.models.fusion import all_present
from tests.conftest import TINY_LABELS, make_params, modalities_of, write_manifest, write_png

SPLITS = ["train"] * 60 + ["val"] * 15 + ["test"] * 15


@pytest.fixture
def crafted(tmp_path):
    """A split manifest, and a feature cache in the reverse order whose features carry each
    sample's label: the image tells class 0 from the rest, the text class 2 from the rest."""
    params = make_params(tmp_path / "data", labels=TINY_LABELS)
    layout = Layout(tmp_path / "artifacts")
    ids = [f"s{i:03d}" for i in range(90)]
    labels = [TINY_LABELS[(i * 7) % 3] for i in range(90)]
    for s in ids:  # the images train measures for the drift reference
        write_png(tmp_path / "data" / "images" / f"{s}.png", (len(s) * 30 % 256, 40, 90, 255))
    write_manifest(layout.split_manifest, [{"sample_id": s, "image": f"images/{s}.png", "text": f"thing {s}",
                                            "label": lab, "split": sp} for s, lab, sp in zip(ids, labels, SPLITS)])
    mods = modalities_of(params)
    g = torch.Generator().manual_seed(0)
    y = torch.tensor([TINY_LABELS.index(lab) for lab in labels])
    image_protos = torch.randn(2, mods[0].feature_dim, generator=g)
    text_protos = torch.randn(2, mods[1].feature_dim, generator=g)
    image = image_protos[(y != 0).long()] + torch.randn(90, mods[0].feature_dim, generator=g) * 0.3
    text = text_protos[(y == 2).long()] + torch.randn(90, mods[1].feature_dim, generator=g) * 0.3
    reverse = list(range(89, -1, -1))
    features = {"image": image[reverse], "text": text[reverse]}
    encoders = {m.name: m.identity(torch.float32) for m in mods}
    FeatureCache([ids[i] for i in reverse], features, all_present(features), encoders).save(layout.features)
    return params, layout, ids, labels


def test_features_are_matched_to_labels_by_sample_id_whatever_the_cache_order(crafted):
    params, layout, ids, labels = crafted
    stages.train(params, layout, device="cpu")
    metrics = stages.evaluate(params, layout)
    assert metrics["test"]["fused"]["accuracy"] == 1.0
    # alone, each modality cannot tell two classes apart (15 rows: chance may still get a few right)
    assert metrics["test"]["image"]["accuracy"] < 1.0
    assert metrics["test"]["text"]["accuracy"] < 1.0
    assert metrics["test_samples"] == 15


def test_evaluate_writes_calibration_and_per_class_tables_that_agree_with_its_scores(crafted):
    params, layout, ids, labels = crafted
    stages.train(params, layout, device="cpu")
    metrics = stages.evaluate(params, layout)
    fused = metrics["test"]["fused"]
    assert fused["accuracy_low"] <= fused["accuracy"] <= fused["accuracy_high"]
    calibration = pd.read_csv(layout.calibration)
    assert calibration["count"].sum() == 15
    weighted_gap = (calibration["count"] * (calibration["accuracy"] - calibration["confidence"]).abs()).sum() / 15
    assert weighted_gap == pytest.approx(fused["ece"], abs=1e-3)  # the table rounds to 4 decimals
    per_class = pd.read_csv(layout.per_class)
    assert list(per_class["class"]) == TINY_LABELS and per_class["support"].sum() == 15
    assert per_class["fused_f1"].mean() == pytest.approx(fused["macro_f1"], abs=1e-3)
    assert per_class["image_recall"].mean() < 1  # each modality alone has its own columns
    predictions = pd.read_csv(layout.predictions)
    assert predictions["confidence_fused"].between(1 / 3, 1).all()


def test_evaluate_reports_each_models_ece_before_and_after_the_temperatures_fitted_on_validation(crafted):
    from mmops.evaluation.calibration import expected_calibration_error
    from mmops.models.checkpoint import model_from_checkpoint
    from mmops.models.predict import predict
    from mmops.data.split_features import features_by_split

    params, layout, ids, labels = crafted
    stages.train(params, layout, device="cpu")
    metrics = stages.evaluate(params, layout)
    model = model_from_checkpoint(artifacts.load_torch(layout.model))
    assert metrics["temperatures"] == model.temperatures and set(model.temperatures) == {"fused", "image", "text"}
    _, data, _ = features_by_split(params, layout)
    test = data["test"]
    with model.uncalibrated():
        raw = predict(model, test["features"], torch.device("cpu"), test["present"]).log_probs["fused"]
    before = expected_calibration_error(raw.exp().numpy(), test["target"].numpy())
    assert metrics["test"]["fused"]["ece_uncalibrated"] == pytest.approx(before, abs=1e-4)
    assert metrics["test"]["fused"]["ece"] != metrics["test"]["fused"]["ece_uncalibrated"]


def test_a_test_row_without_a_modality_has_no_answer_from_it_in_the_predictions(crafted):
    params, layout, ids, labels = crafted
    cache = FeatureCache.load(layout.features)
    lacking = {s for s, sp in zip(ids, SPLITS) if sp == "test"}
    lacking = set(sorted(lacking)[:4])
    cache.present["text"] = torch.tensor([s not in lacking for s in cache.sample_ids])
    cache.save(layout.features)
    stages.train(params, layout, device="cpu")
    metrics = stages.evaluate(params, layout)
    predictions = pd.read_csv(layout.predictions, dtype={"sample_id": str}, keep_default_na=False)
    without = predictions["sample_id"].isin(lacking)
    assert (predictions.loc[without, "pred_text"] == "").all() and (predictions.loc[without, "confidence_text"] == "").all()
    assert (predictions.loc[~without, "pred_text"] != "").all() and (predictions["pred_fused"] != "").all()
    text_right = (predictions.loc[~without, "pred_text"] == predictions.loc[~without, "label"]).mean()
    assert metrics["test"]["text"]["accuracy"] == pytest.approx(text_right)


def test_evaluate_scores_only_the_test_split_and_each_prediction_row_is_its_sample(crafted):
    params, layout, ids, labels = crafted
    stages.train(params, layout, device="cpu")
    stages.evaluate(params, layout)
    predictions = pd.read_csv(layout.predictions, dtype=str)
    test_ids = [s for s, sp in zip(ids, SPLITS) if sp == "test"]
    assert list(predictions["sample_id"]) == test_ids
    assert list(predictions["label"]) == [dict(zip(ids, labels))[s] for s in test_ids]
    assert (predictions["pred_fused"] == predictions["label"]).all()
    assert len(pd.read_csv(layout.confusion)) == len(test_ids)


def test_train_refuses_features_made_by_another_encoder_naming_both_sides(crafted):
    params, layout, _, _ = crafted
    cache = FeatureCache.load(layout.features)
    cache.encoders["image"]["input_size"] = 224
    cache.save(layout.features)
    with pytest.raises(EncoderMismatch, match=r"image\.input_size: .*features\.pt has 224, params\.yaml .* has 128"):
        stages.train(params, layout, device="cpu")


def test_evaluate_refuses_a_model_trained_for_other_classes_naming_both_lists(crafted):
    params, layout, _, _ = crafted
    stages.train(params, layout, device="cpu")
    ckpt = artifacts.load_torch(layout.model)
    ckpt["classes"] = list(reversed(ckpt["classes"]))
    artifacts.save_torch(layout.model, ckpt)
    with pytest.raises(ValueError, match=r"trained for classes \['Objects', 'Flags', 'Animals & Nature'\].*"
                                         r"'data.labels' is \['Animals & Nature', 'Flags', 'Objects'\]"):
        stages.evaluate(params, layout)


def test_evaluate_refuses_features_other_than_the_ones_the_model_was_trained_on(crafted):
    params, layout, _, _ = crafted
    stages.train(params, layout, device="cpu")
    cache = FeatureCache.load(layout.features)
    cache.encoders["text"]["dtype"] = "bfloat16"
    cache.save(layout.features)
    with pytest.raises(EncoderMismatch, match=r"text\.dtype: .*features\.pt has 'bfloat16', .*model\.pt has 'float32'"):
        stages.evaluate(params, layout)


def test_summary_prints_fused_first_then_each_modality_and_the_registered_version(tmp_path, capsys):
    layout = Layout(tmp_path / "artifacts")
    scores = {"image": (0.5, 0.25), "fused": (0.875, 0.8125), "text": (0.625, 0.375)}
    artifacts.write_json(layout.metrics, {"test_samples": 8, "test": {
        m: {"accuracy": a, "macro_f1": f, "ece": a / 10, "accuracy_low": a - 0.1, "accuracy_high": a + 0.1,
            "macro_f1_low": f - 0.2, "macro_f1_high": f + 0.1} for m, (a, f) in scores.items()}})
    artifacts.write_json(layout.registered, {"name": "clf", "version": "3", "alias": "challenger",
                                             "run_id": "abc", "tracking_uri": "sqlite:///x.db",
                                             "model_card": "runs:/abc/model_card.html"})
    assert main(["summary", "--artifacts", str(layout.root)]) == 0
    lines = capsys.readouterr().out.splitlines()
    table = [line.split() for line in lines if line.strip().split(" ")[0] in scores]
    assert table == [["fused", "0.875", "[0.775,", "0.975]", "0.812", "[0.613,", "0.912]", "0.087"],
                     ["image", "0.500", "[0.400,", "0.600]", "0.250", "[0.050,", "0.350]", "0.050"],
                     ["text", "0.625", "[0.525,", "0.725]", "0.375", "[0.175,", "0.475]", "0.062"]]
    assert any("Test split (8 samples)" in line for line in lines)
    assert any("clf version 3 (alias 'challenger'), run abc" in line for line in lines)
    assert any("model card:     runs:/abc/model_card.html  (`mmops card 3`" in line for line in lines)


def test_each_modality_alone_is_scored_on_the_test_samples_that_have_it(crafted):
    params, layout, ids, _ = crafted
    cache = FeatureCache.load(layout.features)
    test_ids = [s for s, sp in zip(ids, SPLITS) if sp == "test"]
    lacking = set(test_ids[:5])
    cache.present["text"] = torch.tensor([s not in lacking for s in cache.sample_ids])
    cache.features["text"][~cache.present["text"]] = 0
    cache.save(layout.features)
    stages.train(params, layout, device="cpu")
    metrics = stages.evaluate(params, layout)
    predictions = pd.read_csv(layout.predictions, dtype=str)
    has_text = ~predictions["sample_id"].isin(lacking)
    expected = (predictions.loc[has_text, "pred_text"] == predictions.loc[has_text, "label"]).mean()
    assert metrics["test"]["text"]["accuracy"] == pytest.approx(expected)
    assert metrics["test"]["fused"]["accuracy"] == pytest.approx((predictions["pred_fused"] == predictions["label"]).mean())


def test_featurize_marks_an_absent_optional_modality_and_encodes_the_rest(tiny_params, tiny_rows, tmp_path):
    import dataclasses

    tiny_rows[1]["text"] = ""
    write_manifest(tiny_params.data.manifest, tiny_rows)
    small = {"image": {"size": 32, "max_pixels": 10_000}}
    params = dataclasses.replace(tiny_params, modalities=tuple(
        dataclasses.replace(m, required=m.name != "text", options=small.get(m.name, m.options))
        for m in tiny_params.modalities))
    layout = Layout(tmp_path / "artifacts")
    stages.clean(params, layout)
    stages.featurize(params, layout, device="cpu")
    cache = FeatureCache.load(layout.features)
    assert cache.present["text"].tolist() == [True, False, True, True, True, True]
    assert cache.present["image"].all()
    assert torch.count_nonzero(cache.features["text"][1]) == 0
    assert (cache.features["text"][[0, 2]].norm(dim=1) > 0.9).all()  # unit-length embeddings
    assert cache.encoders["image"]["input_size"] == 32 and cache.encoders["text"]["dtype"] == "float32"


def test_train_saves_the_reference_profile_of_its_train_split(crafted):
    from mmops.data.profile import load_profile

    params, layout, ids, labels = crafted
    stages.train(params, layout, device="cpu")
    profile = load_profile(layout.reference)
    train_labels = [lab for lab, split in zip(labels, SPLITS) if split == "train"]
    assert profile["rows"] == 60
    assert profile["labels"] == {label: train_labels.count(label) for label in sorted(set(train_labels))}
    assert set(profile["features"]) == {"image", "text"}
    assert {name: len(values) for name, values in profile["measures"].items()} == {
        "image.width": 60, "image.height": 60, "image.brightness": 60, "text.length": 60}


@pytest.mark.slow
def test_a_train_stage_killed_mid_run_resumes_to_the_uninterrupted_model(crafted, tmp_path):
    import signal
    import subprocess
    import sys
    import time

    import yaml

    from tests.conftest import repo_params, venv_env

    params, layout, ids, labels = crafted
    raw = repo_params(data={"root": str(params.data.root), "manifest": str(params.data.manifest),
                            "labels": TINY_LABELS}, clean={"min_per_class": 1}, train={"epochs": 150})
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(raw))

    def stage(*extra: str) -> subprocess.Popen:
        return subprocess.Popen([sys.executable, "-m", "mmops.cli", "stage", "train", "--params", "params.yaml",
                                 "--artifacts", "artifacts", "--device", "cpu", *extra],
                                cwd=tmp_path, env=venv_env(), stderr=subprocess.PIPE, text=True)

    assert stage().wait(timeout=600) == 0
    whole = artifacts.load_torch(layout.model)
    assert not layout.train_checkpoint.exists()  # a finished run leaves nothing to resume
    layout.model.unlink()

    run = stage()
    epoch = 0
    while epoch < 3 and run.poll() is None:
        time.sleep(0.02)
        if layout.train_checkpoint.exists():
            epoch = artifacts.load_torch(layout.train_checkpoint)["epoch"]
    run.send_signal(signal.SIGKILL)
    assert run.wait(timeout=60) == -signal.SIGKILL, "precondition: the run was killed before it finished"
    killed_at = artifacts.load_torch(layout.train_checkpoint)["epoch"]
    assert 3 <= killed_at < 150 and not layout.model.exists()

    resumed = stage("--resume")
    _, err = resumed.communicate(timeout=600)
    assert resumed.returncode == 0, err
    assert f"resumed after epoch {killed_at}" in err
    ckpt = artifacts.load_torch(layout.model)
    assert ckpt["epoch"] == whole["epoch"]
    assert all(torch.equal(ckpt["model"][k], whole["model"][k]) for k in whole["model"])


@pytest.mark.slow
def test_train_under_torchrun_on_two_processes_matches_one_process_and_only_rank_0_writes(crafted, tmp_path):
    import subprocess
    import sys

    import yaml

    from tests.conftest import repo_params, venv_env

    params, layout, ids, labels = crafted
    raw = repo_params(data={"root": str(params.data.root), "manifest": str(params.data.manifest),
                            "labels": TINY_LABELS}, clean={"min_per_class": 1}, train={"batch_size": 16})
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
    assert two.stderr.count("2 processes; kept epoch") == 1  # rank 0 alone logs the run
    assert '"rank": 1' in two.stdout and '"processes": 2' in two.stdout
    # (each process also checks at the end that all hold the same weights, or the run fails)
    double = pd.read_csv(layout.history)
    assert layout.model.exists() and not layout.train_checkpoint.exists()
    # The same global batch and learning rate, another order of samples: the curves agree within
    # a stated tolerance, not bit for bit.
    assert len(double) == len(single)
    assert abs(double["val_loss"].min() - single["val_loss"].min()) < 0.05
    assert abs(double["val_acc"].iloc[-1] - single["val_acc"].iloc[-1]) <= 0.1
    assert abs(double["train_loss"].iloc[-1] - single["train_loss"].iloc[-1]) < 0.1
    metrics = stages.evaluate(params, layout)
    assert metrics["test"]["fused"]["accuracy"] == 1.0
