"""One function per pipeline stage: params and the artifact layout in, files out.

This is the single place each step is implemented: `dvc.yaml` reaches these through the CLI
(`mmops stage <name>`), `flows/training.py` through Prefect tasks, and tests call them directly.
"""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import pandas as pd
import torch

from mmops import artifacts
from mmops.config import Layout, Params
from mmops.data.clean import clean_manifest
from mmops.data.manifest import read_manifest, require_columns
from mmops.data.split import SPLITS, assign_splits
from mmops.device import pick_device

STAGES = ("validate", "clean", "split", "featurize", "train", "evaluate", "register")


def validate(params: Params, layout: Layout) -> dict[str, Any]:
    """Run the Great Expectations suite on the raw manifest; write the result (JSON and a
    readable HTML page); stop on violations."""
    from mmops.data.validate import ValidationError, render_html, validate_manifest

    frame = read_manifest(params.data.manifest, params.data.columns)
    report = validate_manifest(frame, params.data)
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
    frame = read_manifest(params.data.manifest, params.data.columns)
    require_columns(frame, params.data.manifest, params.data.columns)
    kept, rejects = clean_manifest(frame, params.data.root, params.data.labels, params.clean)
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
    """Assign each cleaned sample to train/val/test by a hash of its id."""
    frame = assign_splits(_read_stage_csv(layout.clean_manifest), params.split)
    artifacts.write_csv(layout.split_manifest, frame)
    return {name: int((frame["split"] == name).sum()) for name in SPLITS}


def featurize(params: Params, layout: Layout, device: str | None = None) -> dict[str, Any]:
    """Encode every sample's image and text with the frozen encoders into the feature cache."""
    from mmops.data.manifest import resolve_media
    from mmops.data.media import load_image
    from mmops.features.image import ImageEncoder, ImagePreset, encode_images
    from mmops.features.text import TextEncoder

    frame = _read_stage_csv(layout.clean_manifest)  # not the split: features do not depend on it
    dev = pick_device(device)
    size, batch = params.featurize.image_size, params.featurize.batch_size
    paths = [resolve_media(params.data.root, p) for p in frame["image"]]
    image = encode_images(paths, ImageEncoder(image_size=size), ImagePreset(size=size), batch_size=batch,
                          device=dev, load=lambda path: load_image(path, params.clean.max_image_pixels))
    text = TextEncoder(device=dev)(list(frame["text"]), batch_size=batch)
    artifacts.save_torch(layout.features, {
        "sample_id": list(frame["sample_id"]), "image": image, "text": text,
    })
    return {"samples": len(frame), "image_dim": image.shape[1], "text_dim": text.shape[1], "device": str(dev)}


def _features_by_split(params: Params, layout: Layout) -> tuple[dict[str, dict[str, torch.Tensor]], dict[str, torch.Tensor], pd.DataFrame]:
    """Features and label indices per split, aligned with the split manifest."""
    frame = _read_stage_csv(layout.split_manifest)
    cache = artifacts.load_torch(layout.features)
    position = {sample_id: i for i, sample_id in enumerate(cache["sample_id"])}
    missing = [s for s in frame["sample_id"] if s not in position]
    if missing:
        raise RuntimeError(f"{layout.features} lacks {len(missing)} sample(s) (e.g. {missing[0]}); rerun featurize")
    order = torch.tensor([position[s] for s in frame["sample_id"]], dtype=torch.long)
    cache = {m: cache[m][order] for m in ("image", "text")}
    classes = list(params.data.labels)
    labels = torch.tensor([classes.index(label) for label in frame["label"]])
    features, targets = {}, {}
    for name in SPLITS:
        mask = torch.tensor((frame["split"] == name).to_numpy(), dtype=torch.bool)
        if not mask.any():
            raise ValueError(f"{layout.split_manifest}: the '{name}' split is empty; add data or change 'split' params")
        features[name] = {"image": cache["image"][mask], "text": cache["text"][mask]}
        targets[name] = labels[mask]
    return features, targets, frame


def train(params: Params, layout: Layout, device: str | None = None) -> dict[str, Any]:
    """Train the late-fusion classifier on the train split (model selection on val)."""
    from mmops.training.train import checkpoint, fit

    features, targets, _ = _features_by_split(params, layout)
    dev = pick_device(device)
    result = fit(features["train"], targets["train"], features["val"], targets["val"],
                 len(params.data.labels), params.train, dev)
    artifacts.save_torch(layout.model, checkpoint(result, list(params.data.labels), params.train,
                                                  params.featurize.image_size, params.clean.max_image_pixels))
    artifacts.write_csv(layout.history, pd.DataFrame(result.history))
    return {"best_epoch": result.best_epoch, "fusion_weights": result.model.fusion_weights.tolist(), "device": str(dev)}


def evaluate(params: Params, layout: Layout) -> dict[str, Any]:
    """Score the fused model and each single modality on the test split."""
    from mmops.evaluation.metrics import classification_metrics, confusion_rows
    from mmops.training.train import model_from_checkpoint, predict

    features, targets, frame = _features_by_split(params, layout)
    model = model_from_checkpoint(artifacts.load_torch(layout.model))
    classes = list(params.data.labels)
    y = targets["test"].numpy()
    log_probs = predict(model, features["test"], torch.device("cpu"))
    scores = {name: classification_metrics(y, lp.argmax(1).numpy(), len(classes)) for name, lp in log_probs.items()}
    metrics = {"test": scores, "test_samples": int(len(y))}
    fused = log_probs["fused"].argmax(1).numpy()
    test_rows = frame[frame["split"] == "test"]
    artifacts.write_json(layout.metrics, metrics)
    artifacts.write_csv(layout.confusion, confusion_rows(y, fused, classes))
    artifacts.write_csv(layout.predictions, pd.DataFrame({
        "sample_id": test_rows["sample_id"].to_numpy(), "label": test_rows["label"].to_numpy(),
        **{f"pred_{name}": [classes[i] for i in lp.argmax(1).tolist()] for name, lp in log_probs.items()},
    }))
    return metrics


def register(params: Params, layout: Layout, *, dvc_file: Path = Path("data.dvc"),
             stage: str = "register", flow_run_id: str | None = None) -> dict[str, Any]:
    """Log the pipeline run to MLflow with its lineage and register the model (alias `challenger`)."""
    import mmops
    from mmops.registry.lineage import lineage_tags
    from mmops.registry.mlflow_registry import log_and_register

    metrics = json.loads(layout.metrics.read_text())
    flat = {f"test_{m}_{k}": v for m, scores in metrics["test"].items() for k, v in scores.items()}
    example = _read_stage_csv(layout.split_manifest).query("split == 'test'").head(2)
    input_example = pd.DataFrame({
        "image": [base64.b64encode(Path(params.data.root, p).read_bytes()).decode() for p in example["image"]],
        "text": list(example["text"]),
    })
    tags = lineage_tags(dvc_file=dvc_file, params_digest=params.digest(), stage=stage, flow_run_id=flow_run_id)
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
        artifacts=[layout.metrics, layout.confusion, layout.validation, layout.validation_report,
                   layout.rejects, layout.clean_metrics],
        code_dir=Path(mmops.__file__).parent,
    )
    record = {
        "name": registered.name, "version": registered.version, "alias": registered.alias,
        "uri": registered.uri, "run_id": registered.run_id, "experiment_id": registered.experiment_id,
        "tracking_uri": registered.tracking_uri, **tags,
    }
    artifacts.write_json(layout.registered, record)
    return record
