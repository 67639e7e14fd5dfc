"""Model stages: featurize (the feature cache), train, evaluate, and shift (the model on data
drawn another way)."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd
import torch

from mmops import artifacts
from mmops.config import Layout, Params
from mmops.data.manifest import ID
from mmops.data.split_features import augmented_views, features_by_split
from mmops.device import feature_dtype, pick_device
from mmops.features import shards
from mmops.features.cache import FeatureCache, check_encoders
from mmops.modalities import build_modalities

if TYPE_CHECKING:
    from mmops.training.distributed import Dist

DECIMALS = 4  # committed CSVs (curves, calibration): float kernels differ in the last bits between CPUs


def featurize(params: Params, layout: Layout, device: str | None = None) -> dict[str, Any]:
    """Encode every cleaned sample, and every augmented view of a training sample, with each
    modality's frozen encoder into the feature cache, with what identifies each encoder (name,
    package versions, input size, precision). One shard each: `flows/featurize.py` runs the
    same code on many, on a Dask cluster."""
    dev = pick_device(device)
    parts = rows_to_encode(layout)
    cache = shards.merge([shards.encode_shard(params, rows, dev, root=root) for rows, root in parts])
    check_feature_cache(cache, parts, params, layout)
    cache.save(layout.features)
    return {**cache.describe(), "views": sum(len(rows) for rows, root in parts if root), "device": str(dev)}


def rows_to_encode(layout: Layout) -> list[tuple[pd.DataFrame, Path | None]]:
    """What featurize encodes: the clean manifest (media under `data.root`: root None), then
    the augment stage's views (media under their own folder). Features do not depend on the
    split, except that only training samples have views."""
    from mmops.data.augment import VIEWS

    views = augmented_views(layout)
    return [(artifacts.read_csv(layout.clean_manifest), None)] + ([(views, layout.augment / VIEWS)] if len(views) else [])


def check_feature_cache(cache: FeatureCache, parts: list[tuple[pd.DataFrame, Path | None]], params: Params,
                        layout: Layout) -> None:
    """The feature cache's suite over every row of `parts` (clean rows and views), written to
    its JSON; raises (the cache unsaved) on a violation. Then the clean rows' features' drift
    against the last training's reference (views are not data anyone sent), recorded, never
    raising (here, so that `dvc repro` and the sharded flows/featurize.py both run it)."""
    from mmops.data.drift import feature_drift
    from mmops.data.suites import check_features

    cleaned = parts[0][0]
    expected = pd.concat([rows for rows, _ in parts], ignore_index=True)
    suite = check_features(cache, expected, build_modalities(params.modalities), str(layout.features))
    artifacts.write_json(layout.feature_expectations, suite.to_dict())
    if not suite.success:
        listed = "\n  ".join(suite.failures)
        raise ValueError(f"the feature cache fails its suite ({len(suite.failures)} problem(s)):\n  {listed}")
    feature_drift(params, layout, cleaned, cache)


def train(params: Params, layout: Layout, device: str | None = None, resume: bool = False) -> dict[str, Any]:
    """Train the fusion model named by `train.fusion` on the train split (model selection on val).
    Every epoch's state goes to `layout.train_checkpoint` (removed once the model is saved);
    `resume` continues a killed run from there. Under `torchrun`, data-parallel over its
    processes (`mmops.training.distributed`), rank 0 alone writing."""
    from mmops.data.profile import build_profile, save_profile
    from mmops.models.checkpoint import checkpoint
    from mmops.training import distributed
    from mmops.training.train import fit

    cache, data, frame = features_by_split(params, layout, views=True)
    modalities = build_modalities(params.modalities)
    # The cache must be what params.yaml and the installed encoders would make now; its
    # precision and device kind are its own (they follow the device featurize ran on).
    check_encoders(cache.encoders, {m.name: m.identity(torch.float32) for m in modalities},
                   made_by=str(layout.features), expected_by="params.yaml and the installed encoders",
                   ignore=("dtype", "device"), remedy="re-encode with `dvc repro -f featurize`")
    tr, va = data["train"], data["val"]
    with distributed.from_environment(device) as job:
        dev = job.device(device) if job.enabled else pick_device(device)
        if params.train.mode == "finetune":
            result, encoders, weights, samples = _finetune(params, layout, cache, data, frame, modalities, dev,
                                                           resume, job)
        else:
            samples = int(len(tr["target"]))  # the augment stage's views included
            result = fit(tr["features"], tr["target"], va["features"], va["target"], len(params.data.labels),
                         params.train, dev, tr["present"], va["present"], checkpoint=layout.train_checkpoint,
                         resume=resume, job=job)
            encoders, weights = cache.encoders, {}
    if not job.main:
        return {"rank": job.rank, "best_epoch": result.best_epoch}
    artifacts.save_torch(layout.model, checkpoint(
        result.model, list(params.data.labels), epoch=result.best_epoch, encoders=encoders,
        modalities=[dataclasses.asdict(m) for m in params.modalities], encoder_weights=weights,
    ))
    # committed for `dvc plots`: 4 decimals, as float kernels differ in the last bits between CPUs
    artifacts.write_csv(layout.history, pd.DataFrame(result.history).round(DECIMALS))
    # what this model learned from, so later data can be checked against it (`mmops drift`, validate)
    save_profile(layout.reference, build_profile(frame[frame["split"] == "train"], cache, params.data.root,
                                                 modalities, params.drift.components, seen=frame))
    layout.train_checkpoint.unlink(missing_ok=True)  # the run is complete: nothing left to resume
    return {"best_epoch": result.best_epoch, "fusion": params.train.fusion, "mode": params.train.mode,
            "device": str(dev), "train_samples": samples, "processes": job.world_size, "fine_tuned": sorted(weights)}


def _finetune(params: Params, layout: Layout, cache: FeatureCache, data: dict[str, dict[str, Any]],
              frame: pd.DataFrame, modalities: tuple, device: torch.device, resume: bool,
              job: Dist) -> tuple[Any, dict[str, Any], dict[str, Any], int]:
    """`train.mode: finetune`: the trainable encoders tuned with the head on the split's own rows
    and the drawing sets' views of them (all augmented on the fly; the augment stage's augmented
    views are for the frozen mode); the epoch chosen on the val split and, with `train.select_on`,
    those sets' renderings of the val ids. The result, the encoders' identities (a tuned one's with its
    weights' hash), the tuned weights and the number of training rows."""
    from mmops.data.augment import VIEWS
    from mmops.training.finetune import finetune_splits, fit_finetune, selection_split

    tuned = [m for m in modalities if m.trainable() is not None]
    if not tuned:
        raise ValueError("train.mode finetune: none of the modalities has an encoder that can be trained")
    splits = finetune_splits(frame, augmented_views(layout), data, tuned, Path(params.data.root), layout.augment / VIEWS)
    val_ids = set(splits["val"].ids)
    select = {name: selection_split(params, Path(params.shift.sets[name]), val_ids, tuned, device)
              for name in params.train.select_on}
    augment = params.augment if params.augment.enabled else None
    result = fit_finetune(splits["train"], splits["val"], tuned, len(params.data.labels), params.train, augment,
                          params.data.root, device, checkpoint=layout.train_checkpoint, resume=resume, job=job,
                          select=select)
    encoders = dict(cache.encoders)
    for m in tuned:
        made = cache.encoders[m.name]  # the precision and device kind featurize used: evaluate and serving follow
        encoders[m.name] = m.identity(feature_dtype(made["dtype"], device), made["device"],
                                      weights=result.encoders[m.name])
    return result, encoders, result.encoders, len(splits["train"].ids)


def evaluate(params: Params, layout: Layout) -> dict[str, Any]:
    """Score the fused model, each single modality and (with three or more) each pair on the test
    split, with intervals over the split's groups, calibration (the ECE before and after the
    model's temperatures) and per-class tables, and each answer with its (calibrated) confidence."""
    from mmops.evaluation.bootstrap import Resampler
    from mmops.evaluation.metrics import score_models
    from mmops.evaluation.retrieval import retrieval_scores
    from mmops.evaluation.tables import evaluation_tables
    from mmops.models.checkpoint import model_from_checkpoint
    from mmops.models.encoders import encode_with_model
    from mmops.models.predict import predict_subsets

    cache, data, frame = features_by_split(params, layout)
    ckpt = artifacts.load_torch(layout.model)
    classes = list(params.data.labels)
    if list(ckpt["classes"]) != classes:
        raise ValueError(f"{layout.model} was trained for classes {list(ckpt['classes'])}, "
                         f"but params.yaml 'data.labels' is {classes}; retrain")
    # A fine-tuned encoder differs from the cached features' by its weights alone
    check_encoders(cache.encoders, ckpt["encoders"], made_by=str(layout.features), expected_by=str(layout.model),
                   ignore=("weights",))
    model = model_from_checkpoint(ckpt)
    test = data["test"]
    test_rows = frame[frame["split"] == "test"]
    for m in build_modalities(params.modalities):  # its own encoder makes a fine-tuned model's test features
        if m.name in ckpt["encoder_weights"]:
            test["features"][m.name] = encode_with_model(m, ckpt, list(test_rows[m.name]), test["present"][m.name],
                                                         params.data.root, batch_size=params.featurize.batch_size)
    y = test["target"].numpy()
    cpu = torch.device("cpu")
    # each modality alone (and, with three or more, each pair) is scored on the samples that
    # have it; fused on all of them
    out, rows = predict_subsets(model, test["features"], cpu, test["present"])
    log_probs = {name: lp.numpy() for name, lp in out.log_probs.items()}
    present = {name: p.numpy() for name, p in rows.items()}
    with model.uncalibrated():  # the same answers, their confidence before temperature scaling
        raw = {name: lp.numpy() for name, lp in predict_subsets(model, test["features"], cpu, test["present"])[0]
               .log_probs.items()}
    # intervals resample the split's groups, as the gate does (its resamples and seed)
    groups = test_rows["group"].to_numpy() if "group" in test_rows else None  # None: each row its own
    resampler = Resampler.of(groups, len(y), resamples=params.promote.bootstrap_resamples, seed=params.promote.seed)
    metrics: dict[str, Any] = {"test": score_models(log_probs, y, present, len(classes), resampler, raw),
                               "test_samples": int(len(y)), "temperatures": dict(model.temperatures)}
    if model.alignment is not None:
        with torch.no_grad():
            metrics["retrieval"] = retrieval_scores(model.alignment(out.embeddings), test["present"])
    artifacts.write_json(layout.metrics, metrics)
    tables = evaluation_tables(test_rows, y, log_probs, present, classes, DECIMALS)
    artifacts.write_csv(layout.confusion, tables["confusion"])
    artifacts.write_csv(layout.calibration, tables["calibration"])
    artifacts.write_csv(layout.per_class, tables["per_class"])
    artifacts.write_csv(layout.predictions, tables["predictions"])
    return metrics


def shift(params: Params, layout: Layout) -> dict[str, Any]:
    """Score the trained model on each labelled set of `shift.sets` (drawn another way: another
    vendor's art, other wording): fused and each modality alone, on all its rows and on the rows
    whose ids are in the test split (the rest are drawings of what the model trained or was
    selected on), with accuracy, macro-F1, calibrated ECE and the fusion regret
    (`mmops.evaluation.shift`). Rows the model cannot score (unreadable, a label outside its
    classes) are counted by reason; a listed set that is absent is skipped with a message."""
    import logging

    from mmops.evaluation.shift import score_manifest, table_rows

    ckpt = artifacts.load_torch(layout.model)
    frame = artifacts.read_csv(layout.split_manifest)
    test_ids = set(frame.loc[frame["split"] == "test", ID])
    report: dict[str, Any] = {}
    for name, manifest in params.shift.sets.items():
        manifest = Path(manifest)
        if not manifest.exists():
            logging.getLogger(__name__).warning("shift: set '%s' skipped: %s is absent (build it, or drop it from "
                                                "params.yaml 'shift.sets')", name, manifest)
            report[name] = {"skipped": f"{manifest} is absent"}
            continue
        report[name] = score_manifest(params, manifest, ckpt, test_ids, str(layout.model))
    artifacts.write_json(layout.shift_metrics, {"sets": report})
    columns = ["scored", "set", "rows", "model", "samples", "accuracy", "macro_f1", "ece"]
    artifacts.write_csv(layout.shift_scores, pd.DataFrame(list(table_rows(report)), columns=columns).round(DECIMALS))
    return report
