"""One function per pipeline stage: params and the artifact layout in, files out.

This is the single place each step is implemented: `dvc.yaml` reaches these through the CLI
(`mmops stage <name>`), `flows/training.py` through Prefect tasks, and tests call them directly.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import pandas as pd
import torch

from mmops import artifacts
from mmops.config import Layout, Params
from mmops.data.clean import clean_manifest, hash_column
from mmops.data.manifest import ID, LABEL, read_manifest, require_columns, source_names
from mmops.data.split import SPLITS, assign_splits
from mmops.device import feature_dtype, pick_device
from mmops.features.cache import FeatureCache, check_encoders
from mmops.modalities import build_modalities

STAGES = ("validate", "clean", "split", "featurize", "train", "evaluate", "register")


def _raw_manifest(params: Params) -> pd.DataFrame:
    return read_manifest(params.data.manifest, source_names(params.data, params.modalities))


def validate(params: Params, layout: Layout) -> dict[str, Any]:
    """Run the Great Expectations suite on the raw manifest; write the result (JSON and a
    readable HTML page); stop on violations."""
    from mmops.data.validate import ValidationError, render_html, validate_manifest

    frame = _raw_manifest(params)
    report = validate_manifest(frame, params.data, build_modalities(params.modalities))
    artifacts.write_json(layout.validation, report.to_dict())
    artifacts.write_text(layout.validation_report, render_html(report, str(params.data.manifest)))
    if not report.success:
        listed = "\n  ".join(report.failures)
        raise ValidationError(
            f"{params.data.manifest} failed validation ({len(report.failures)} problem(s)):\n  {listed}\n"
            f"(report: {layout.validation_report})"
        )
    return {"rows": len(frame), "success": True}


def clean(params: Params, layout: Layout) -> dict[str, Any]:
    """Keep usable rows, record every dropped row with its reason, and count them."""
    frame = _raw_manifest(params)
    require_columns(frame, params.data.manifest, source_names(params.data, params.modalities))
    kept, rejects = clean_manifest(frame, params.data.root, params.data.labels, build_modalities(params.modalities))
    summary = {
        "rows": len(frame),
        "kept": len(kept),
        "rejected": len(rejects),
        "rejected_by_reason": rejects["reason"].str.split(":").str[0].value_counts().to_dict(),
    }
    artifacts.write_csv(layout.clean_manifest, kept)
    artifacts.write_csv(layout.rejects, rejects)
    artifacts.write_json(layout.clean_metrics, summary)
    return summary


def _read_stage_csv(path: Path) -> pd.DataFrame:
    return pd.read_csv(path, dtype=str, keep_default_na=False)


def split(params: Params, layout: Layout) -> dict[str, int]:
    """Assign each cleaned sample to train/val/test by a hash of its group (identical media)."""
    media = [hash_column(m.name) for m in build_modalities(params.modalities) if m.media]
    frame = assign_splits(_read_stage_csv(layout.clean_manifest), params.split, media)
    artifacts.write_csv(layout.split_manifest, frame)
    return {name: int((frame["split"] == name).sum()) for name in SPLITS}


def featurize(params: Params, layout: Layout, device: str | None = None) -> dict[str, Any]:
    """Encode every cleaned sample with each modality's frozen encoder into the feature cache,
    with what identifies each encoder (name, package versions, input size, precision)."""
    frame = _read_stage_csv(layout.clean_manifest)  # not the split: features do not depend on it
    dev = pick_device(device)
    dtype = feature_dtype(params.featurize.precision, dev)
    features, present, encoders = {}, {}, {}
    for modality in build_modalities(params.modalities):
        mask = torch.tensor([not modality.may_skip(v) for v in frame[modality.name]], dtype=torch.bool)
        encode = modality.encoder(dev, dtype)
        out = torch.zeros(len(frame), modality.feature_dim)  # an absent value's features are never used
        if mask.any():
            out[mask] = encode(list(frame.loc[mask.numpy(), modality.name]), batch_size=params.featurize.batch_size,
                               load=lambda value, m=modality: m.load(value, params.data.root))
        features[modality.name], present[modality.name] = out, mask
        encoders[modality.name] = modality.identity(dtype)
    FeatureCache(list(frame[ID]), features, present, encoders).save(layout.features)
    return {"samples": len(frame), "dims": {m: t.shape[1] for m, t in features.items()},
            "device": str(dev), "dtype": str(dtype).removeprefix("torch.")}


def _features_by_split(params: Params, layout: Layout) -> tuple[FeatureCache, dict[str, dict[str, Any]], pd.DataFrame]:
    """The cache, and per split its features, presence masks and label indices, aligned with
    the split manifest's rows."""
    frame = _read_stage_csv(layout.split_manifest)
    cache = FeatureCache.load(layout.features)
    features, present = cache.align(list(frame[ID]), str(layout.features))
    classes = list(params.data.labels)
    labels = torch.tensor([classes.index(label) for label in frame[LABEL]])
    by_split = {}
    for name in SPLITS:
        mask = torch.tensor((frame["split"] == name).to_numpy(), dtype=torch.bool)
        if not mask.any():
            raise ValueError(f"{layout.split_manifest}: the '{name}' split is empty; add data or change 'split' params")
        by_split[name] = {"features": {m: t[mask] for m, t in features.items()},
                          "present": {m: p[mask] for m, p in present.items()}, "target": labels[mask]}
    return cache, by_split, frame


def train(params: Params, layout: Layout, device: str | None = None) -> dict[str, Any]:
    """Train the fusion model named by `train.fusion` on the train split (model selection on val)."""
    from mmops.training.train import checkpoint, fit

    cache, data, _ = _features_by_split(params, layout)
    modalities = build_modalities(params.modalities)
    # The cache must be what params.yaml and the installed encoders would make now; its
    # precision is its own (it follows the device featurize ran on).
    check_encoders(cache.encoders, {m.name: m.identity(torch.float32) for m in modalities},
                   made_by=str(layout.features), expected_by="params.yaml and the installed encoders",
                   ignore=("dtype",), remedy="re-encode with `dvc repro -f featurize`")
    dev = pick_device(device)
    tr, va = data["train"], data["val"]
    result = fit(tr["features"], tr["target"], va["features"], va["target"], len(params.data.labels),
                 params.train, dev, tr["present"], va["present"])
    artifacts.save_torch(layout.model, checkpoint(
        result, list(params.data.labels), encoders=cache.encoders,
        modalities=[dataclasses.asdict(m) for m in params.modalities],
    ))
    artifacts.write_csv(layout.history, pd.DataFrame(result.history))
    return {"best_epoch": result.best_epoch, "fusion": params.train.fusion, "device": str(dev)}


def evaluate(params: Params, layout: Layout) -> dict[str, Any]:
    """Score the fused model and each single modality on the test split."""
    from mmops.evaluation.metrics import classification_metrics, confusion_rows
    from mmops.training.train import model_from_checkpoint, predict

    cache, data, frame = _features_by_split(params, layout)
    ckpt = artifacts.load_torch(layout.model)
    classes = list(params.data.labels)
    if list(ckpt["classes"]) != classes:
        raise ValueError(f"{layout.model} was trained for classes {list(ckpt['classes'])}, "
                         f"but params.yaml 'data.labels' is {classes}; retrain")
    check_encoders(cache.encoders, ckpt["encoders"], made_by=str(layout.features), expected_by=str(layout.model))
    model = model_from_checkpoint(ckpt)
    test = data["test"]
    y = test["target"].numpy()
    log_probs = predict(model, test["features"], torch.device("cpu"), test["present"])
    # each modality alone is scored on the samples that have it; fused on all of them
    rows = {name: test["present"].get(name, torch.ones(len(y), dtype=torch.bool)).numpy() for name in log_probs}
    scores = {name: classification_metrics(y[rows[name]], lp.argmax(1).numpy()[rows[name]], len(classes))
              for name, lp in log_probs.items() if rows[name].any()}  # a modality no test row has: no score
    metrics = {"test": scores, "test_samples": int(len(y))}
    fused = log_probs["fused"].argmax(1).numpy()
    test_rows = frame[frame["split"] == "test"]
    artifacts.write_json(layout.metrics, metrics)
    artifacts.write_csv(layout.confusion, confusion_rows(y, fused, classes))
    artifacts.write_csv(layout.predictions, pd.DataFrame({
        ID: test_rows[ID].to_numpy(), LABEL: test_rows[LABEL].to_numpy(),
        **{f"pred_{name}": [classes[i] for i in lp.argmax(1).tolist()] for name, lp in log_probs.items()},
    }))
    return metrics


def dvc_file_of(params: Params) -> Path:
    """The `.dvc` file that versions `data.root`; lineage quotes it, so it must exist."""
    root = Path(params.data.root)
    dvc_file = root.parent / f"{root.name}.dvc"
    if not dvc_file.is_file():
        raise ValueError(f"params.yaml 'data.root' ({root}) is not versioned by DVC: no {dvc_file}. "
                         f"Run `dvc add {root}` so the model's lineage can name its data version")
    return dvc_file


def promote(params: Params) -> dict[str, Any]:
    """The gate: the current challenger against the current champion, on the challenger's own
    test split; promote (champion -> challenger, previous -> old champion) or refuse, recorded."""
    from mmops.registry.promotion import promote as run_gate

    outcome = run_gate(params, dvc_file=dvc_file_of(params), classes=list(params.data.labels),
                       modalities=build_modalities(params.modalities))
    return {"action": outcome.action, "challenger": outcome.challenger, "champion_before": outcome.champion_before,
            "champion_after": outcome.champion_after, "run_id": outcome.run_id,
            "checks": outcome.decision.reasons if outcome.decision else [],
            "numbers": outcome.decision.numbers if outcome.decision else {}}


def rollback(params: Params) -> dict[str, Any]:
    """Point `champion` back at the `previous` version (and `previous` at the one it replaced)."""
    from mmops.registry.promotion import rollback as swap

    outcome = swap(params)
    return {"action": outcome.action, "champion_before": outcome.champion_before,
            "champion_after": outcome.champion_after, "run_id": outcome.run_id}


def _committed(commit: str) -> bool:
    return commit != "unknown" and not commit.endswith("-dirty")


def register(params: Params, layout: Layout, *, stage: str = "register", flow_run_id: str | None = None) -> dict[str, Any]:
    """Log the pipeline run to MLflow with its lineage and register the model (alias
    `challenger`), unless `register.require_committed` and the tree has uncommitted changes:
    then nothing is registered and the record says why."""
    import mmops
    from mmops.registry.lineage import lineage_tags
    from mmops.registry.mlflow_registry import log_and_register

    dvc_file = dvc_file_of(params)
    tags = lineage_tags(dvc_file=dvc_file, params_digest=params.digest(), stage=stage, flow_run_id=flow_run_id)
    if params.register.require_committed and not _committed(tags["mmops.git_commit"]):
        record = {"registered": False, "reason": f"the tree has uncommitted changes (git status) or is not a git "
                  f"repository ({tags['mmops.git_commit']}): commit them, then `mmops stage register`", **tags}
        artifacts.write_json(layout.registered, record)
        return record
    modalities = build_modalities(params.modalities)
    metrics = json.loads(layout.metrics.read_text())
    flat = {f"test_{m}_{k}": v for m, scores in metrics["test"].items() for k, v in scores.items()}
    example = _read_stage_csv(layout.split_manifest).query("split == 'test'").head(2)
    input_example = pd.DataFrame({m.name: [None if m.may_skip(v) else m.to_request(v, params.data.root)
                                           for v in example[m.name]] for m in modalities})
    registered = log_and_register(
        model_name=params.register.model_name,
        experiment=params.register.experiment,
        alias=params.register.alias,
        params=params.to_dict(),
        metrics=flat,
        history=pd.read_csv(layout.history),
        tags=tags,
        checkpoint=layout.model,
        input_example=input_example,
        modalities=[m.name for m in modalities],
        encoder_packages=[p for m in modalities for p in m.encoders[m.spec.encoder].packages],
        # the split manifest: the gate scores champion and challenger on this exact test split
        artifacts=[layout.metrics, layout.confusion, layout.predictions, layout.validation,
                   layout.validation_report, layout.rejects, layout.clean_metrics, layout.split_manifest],
        code_dir=Path(mmops.__file__).parent,
    )
    record = {
        "registered": True, "name": registered.name, "version": registered.version, "alias": registered.alias,
        "uri": registered.uri, "run_id": registered.run_id, "experiment_id": registered.experiment_id,
        "tracking_uri": registered.tracking_uri, **tags,
    }
    artifacts.write_json(layout.registered, record)
    return record
