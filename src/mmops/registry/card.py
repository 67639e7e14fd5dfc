"""A model card per registered version: one self-contained HTML page (pictures inlined, reads
offline), built from what the version's run logged, so `mmops card <version>` can rebuild it on
any machine that reaches the tracking store. Logged to the run and linked from the version."""

from __future__ import annotations

import ast
import base64
import html
import io
import json
import tempfile
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from mlflow.exceptions import MlflowException
from sklearn.metrics import confusion_matrix

from mmops import artifacts
from mmops.data.manifest import ID
from mmops.evaluation.bootstrap import Resampler, interval, macro_f1
from mmops.evaluation.calibration import calibration_error, reliability
from mmops.evaluation.metrics import per_class

CARD = "model_card.html"
RESAMPLES, SEED = 1000, 0  # when the run did not log the gate's own (promote.bootstrap_resamples, .seed)
LOGGED = {"predictions": "pipeline/evaluate/predictions.csv", "split": "pipeline/split/manifest.csv"}
SHIFT = "pipeline/shift/metrics.json"  # optional: a run registered without the shift stage has none


@dataclass(frozen=True)
class CardInputs:
    """What a card is made of: the version's test predictions (`label`, `pred_<model>`), its
    training history (`epoch` and one column per curve), its split manifest, params and tags,
    and the shift stage's report (`shift`: by set, empty when not logged)."""

    name: str
    version: str
    run_id: str
    predictions: pd.DataFrame
    history: pd.DataFrame
    split: pd.DataFrame
    params: dict[str, str]
    tags: dict[str, str]
    classes: list[str]
    shift: dict[str, Any] = field(default_factory=dict)


def bootstrap_scores(target: np.ndarray, predicted: np.ndarray, num_classes: int,
                     groups: np.ndarray | None = None, resamples: int = RESAMPLES,
                     seed: int = SEED) -> dict[str, tuple[float, float, float]]:
    """Accuracy and macro-F1 with a 95% percentile interval from a bootstrap of the test split's
    `groups` (None: of its samples)."""
    resampler = Resampler.of(groups, len(target), resamples=resamples, seed=seed)
    observed = {"accuracy": float((predicted == target).mean()), "macro_f1": macro_f1(target, predicted, num_classes)}
    return {k: (observed[k], *interval(v)) for k, v in
            (("accuracy", resampler.accuracy(target, predicted)),
             ("macro_f1", resampler.macro_f1(target, predicted, num_classes)))}


def _groups(predictions: pd.DataFrame, split: pd.DataFrame) -> np.ndarray | None:
    """Each test prediction's group, from the split manifest (None when either lacks it)."""
    if ID not in predictions.columns or not {ID, "group"} <= set(split.columns):
        return None
    return predictions[ID].astype(str).map(split.set_index(split[ID].astype(str))["group"]).fillna("").to_numpy()


def _png(figure: Any) -> bytes:
    from matplotlib import pyplot as plt

    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
    plt.close(figure)
    return buffer.getvalue()


def _img(png: bytes) -> str:
    return f'<img alt="" src="data:image/png;base64,{base64.b64encode(png).decode()}">'


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")  # no display: render to bytes only
    from matplotlib import pyplot as plt

    return plt


def _confusion_picture(matrix: np.ndarray, classes: list[str]) -> bytes:
    figure, axes = _pyplot().subplots(figsize=(7, 6))
    axes.imshow(matrix, cmap="Blues")
    axes.set_xticks(range(len(classes)), classes, rotation=45, ha="right")
    axes.set_yticks(range(len(classes)), classes)
    axes.set_xlabel("predicted (fused)")
    axes.set_ylabel("actual")
    for (i, j), count in np.ndenumerate(matrix):
        axes.text(j, i, str(count), ha="center", va="center", color="white" if count > matrix.max() / 2 else "black")
    return _png(figure)


def _reliability_picture(frame: pd.DataFrame, target: np.ndarray, index: dict[str, int],
                         models: list[str]) -> bytes | None:
    """Accuracy against confidence per confidence bin, for each model whose confidence was
    logged (None when none was: a version registered by an older mmops)."""
    logged = [m for m in models if f"confidence_{m}" in frame.columns]
    if not logged:
        return None
    figure, axes = _pyplot().subplots(figsize=(5.5, 5))
    axes.plot([0, 1], [0, 1], color="grey", linestyle=":", label="calibrated")
    for model in logged:
        has = _has(frame, model)
        correct = frame.loc[has, f"pred_{model}"].map(index).to_numpy() == target[has]
        confidence = pd.to_numeric(frame.loc[has, f"confidence_{model}"]).to_numpy()
        table = reliability(confidence, correct)
        axes.plot(table["confidence"], table["accuracy"], marker="o",
                  label=f"{model} (ECE {calibration_error(table):.3f})")
    axes.set_xlabel("confidence (probability of the answer)")
    axes.set_ylabel("accuracy")
    axes.set_xlim(0, 1)
    axes.set_ylim(0, 1)
    axes.legend(fontsize=8)
    return _png(figure)


def _curves_picture(history: pd.DataFrame) -> bytes:
    figure, (losses, accuracy) = _pyplot().subplots(1, 2, figsize=(10, 3.5))
    for column in [c for c in history.columns if "loss" in c]:
        losses.plot(history["epoch"], history[column], label=column)
    for column in [c for c in history.columns if "acc" in c]:
        accuracy.plot(history["epoch"], history[column], label=column)
    for axes, title in ((losses, "loss"), (accuracy, "validation accuracy")):
        axes.set_xlabel("epoch")
        axes.set_title(title)
        axes.legend(fontsize=7)
    return _png(figure)


def _table(frame: pd.DataFrame) -> str:
    return frame.to_html(index=False, float_format=lambda v: f"{v:.3f}", border=0, classes="t")


def _shift_html(shift: dict[str, Any]) -> str:
    """The shift sets' scores: per set and rows (all, the test split's ids), each model's
    accuracy, macro-F1 and ECE, and the fusion regret."""
    if not shift:
        return "<p>Not measured (no shift set listed, or registered by an older mmops).</p>"
    rows, skipped = [], []
    for name, found in shift.items():
        if "skipped" in found:
            skipped.append(f"{html.escape(name)}: {html.escape(found['skipped'])}")
            continue
        for subset, label in (("all", "all rows"), ("test_ids", "the test split's ids")):
            scored = found.get(subset)
            if not scored:
                continue
            rows += [{"set": name, "rows": f"{label} ({scored['samples']})", "model": model,
                      "accuracy": s["accuracy"], "macro-F1": s["macro_f1"], "ECE": s.get("ece", np.nan),
                      "regret": scored.get("regret", np.nan) if model == "fused" else np.nan}
                     for model, s in sorted(scored["models"].items(), key=lambda item: item[0] != "fused")]
    table = _table(pd.DataFrame(rows).fillna("")) if rows else ""
    note = f"<p>Skipped: {'; '.join(skipped)}.</p>" if skipped else ""
    return (table + "<p>The same classes drawn another way (another vendor&#39;s art, other wording). Regret: the "
            "best single modality&#39;s accuracy minus the fused model&#39;s on the same rows (above 0, fusing lost "
            "to one of its inputs). Rows whose ids are in the test split are the fair score; the others are "
            "redrawings of samples the model trained or was selected on.</p>" + note)


def _has(frame: pd.DataFrame, model: str) -> np.ndarray:
    """The test rows `model` answered (a modality a row lacks has an empty answer)."""
    return frame[f"pred_{model}"].fillna("").astype(str).ne("").to_numpy()


def _target_and_models(inputs: CardInputs) -> tuple[dict[str, int], np.ndarray, list[str]]:
    index = {c: i for i, c in enumerate(inputs.classes)}
    models = [c.removeprefix("pred_") for c in inputs.predictions.columns if c.startswith("pred_")]
    models.sort(key=lambda m: m != "fused")
    return index, inputs.predictions["label"].map(index).to_numpy(), models


def pictures(inputs: CardInputs) -> dict[str, bytes]:
    """The card's pictures as PNG files by name: the fused model's confusion matrix, the
    reliability diagram (when confidences were logged) and the training curves."""
    index, target, models = _target_and_models(inputs)
    fused = inputs.predictions["pred_fused"].map(index).to_numpy()
    out = {"confusion.png": _confusion_picture(
        confusion_matrix(target, fused, labels=list(range(len(inputs.classes)))), inputs.classes)}
    reliability_png = _reliability_picture(inputs.predictions, target, index, models)
    if reliability_png is not None:
        out["reliability.png"] = reliability_png
    out["training_curves.png"] = _curves_picture(inputs.history)
    return out


def render(inputs: CardInputs, drawn: dict[str, bytes] | None = None) -> str:
    """The card as one HTML page, with `drawn` (`pictures(inputs)` unless given) inlined."""
    drawn = pictures(inputs) if drawn is None else drawn
    index, target, models = _target_and_models(inputs)
    frame = inputs.predictions
    rows, groups = [], _groups(frame, inputs.split)
    resamples = int(inputs.params.get("promote.bootstrap_resamples", RESAMPLES))
    seed = int(inputs.params.get("promote.seed", SEED))
    for model in models:
        has = _has(frame, model)
        scores = bootstrap_scores(target[has], frame.loc[has, f"pred_{model}"].map(index).fillna(-1).to_numpy(int),
                                  len(inputs.classes), None if groups is None else groups[has], resamples, seed)
        rows.append({"model": model, "test samples": int(has.sum()),
                     **{k: f"{v:.3f} [{lo:.3f}, {hi:.3f}]" for k, (v, lo, hi) in scores.items()}})
    fused = frame["pred_fused"].map(index).to_numpy()
    by_class = per_class(target, fused, inputs.classes).rename(columns={"f1": "F1", "support": "test support"})
    for model in models[1:]:  # each modality alone: its F1 per class beside the fused one
        has = _has(frame, model)
        by_class[f"F1, {model} only"] = per_class(
            target[has], frame.loc[has, f"pred_{model}"].map(index).fillna(-1).to_numpy(int), inputs.classes)["f1"]
    counts = inputs.split["split"].value_counts()
    tags, params = inputs.tags, inputs.params
    decision = tags.get("mmops.gate.decision")
    gate = (f"<p><b>{html.escape(decision)}</b>: {html.escape(tags.get('mmops.gate.reason', ''))}</p>"
            if decision else "<p>Not decided yet: run <code>mmops promote</code>.</p>")
    encoders = ", ".join(f"{m.get('name')} ({m.get('encoder')})" for m in _modalities(params))
    lineage = [("data version (data.dvc md5)", tags.get("mmops.data_md5", "?")),
               ("commit", tags.get("mmops.git_commit", "?")), ("params hash", tags.get("mmops.params_hash", "?")),
               ("run", inputs.run_id), ("fusion", params.get("train.fusion", "?")),
               ("modalities and encoders", encoders or "?")]
    # register's one-line drift records (stages/release.py drift_tags): a reason to retrain, not to refuse
    drift = [(what, tags[tag]) for what, tag in (("labels and measures", "mmops.drift.validate"),
                                                 ("features", "mmops.drift.features")) if tag in tags]
    drift_html = (_table(pd.DataFrame(drift, columns=["checked", "against the previous training's data"]))
                  if drift else "<p>Not recorded (the first training, or registered by an older mmops).</p>")
    generated = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{html.escape(inputs.name)} v{inputs.version}: model card</title>
<style>body{{font:15px/1.45 system-ui,sans-serif;max-width:60rem;margin:2rem auto;padding:0 1rem;color:#222}}
table.t{{border-collapse:collapse;margin:.5rem 0}}table.t td,table.t th{{padding:.25rem .7rem;border-bottom:1px solid #ddd;text-align:right}}
table.t td:first-child,table.t th:first-child{{text-align:left}}img{{max-width:100%}}code{{background:#f3f3f3;padding:0 .2rem}}</style></head>
<body>
<h1>{html.escape(inputs.name)} v{inputs.version}</h1>
<p>Classifies a record of {html.escape(encoders or 'its modalities')} into one of {len(inputs.classes)} classes.
Generated {generated} by <code>mmops card {inputs.version}</code>.</p>
<h2>Data</h2>
<p>{len(inputs.split)} samples after cleaning: {counts.get('train', 0)} train, {counts.get('val', 0)} validation,
{counts.get('test', 0)} test (split by a salted hash of each sample's content group).</p>
{_table(pd.DataFrame(lineage, columns=["lineage", "value"]))}
<h2>Drift</h2>
{drift_html}
<h2>Test scores</h2>
<p>On the {len(frame)} test samples, with 95% bootstrap intervals ({resamples} resamples of
{'the split&#39;s groups of samples: a group (same file, near-duplicate, family) is drawn whole' if groups is not None else 'the samples'}).
<i>fused</i> is what is served; each modality alone is scored on the samples that have it.</p>
{_table(pd.DataFrame(rows))}
<h2>Per class (fused, and each modality alone)</h2>
{_table(by_class)}
<h2>Confusion matrix (fused, test)</h2>
{_img(drawn["confusion.png"])}
<h2>Calibration (test)</h2>
{_img(drawn["reliability.png"]) + "<p>Per bin of confidence, how often the answer was right: on the dotted line, a "
 "confidence of 0.8 is right 80% of the time. ECE: the mean gap, weighted by answers.</p>"
 if "reliability.png" in drawn else "<p>Not logged (registered by an older mmops).</p>"}
<h2>Under shift</h2>
{_shift_html(inputs.shift)}
<h2>Training curves</h2>
{_img(drawn["training_curves.png"])}
<h2>Gate decision</h2>
{gate}
<h2>Intended use</h2>
<p>Sorting emoji-like pictograms with their short names into the categories above, as a reference
project for the MLOps around a multimodal classifier. Any modality may be missing from a record
(not all); each answer names the modalities used and each one's share in the decision.</p>
<h2>Known limits</h2>
<ul>
<li>The image model learned one vendor's art (the sample is a single emoji set): other renderings
of the same emoji, photographs and screenshots are out of distribution (see Under shift).</li>
<li>English names only; texts are truncated at the text encoder's token limit.</li>
<li>Small test split: read the intervals, not the point scores.</li>
</ul>
</body></html>
"""


def _modalities(params: dict[str, str]) -> list[dict[str, Any]]:
    """The `modalities:` entries as logged (the run's params flatten a list to its items' reprs)."""
    try:
        entries = ast.literal_eval(f"[{params.get('modalities', '')}]")
    except (ValueError, SyntaxError):
        return []
    return [e for e in entries if isinstance(e, dict)]


def inputs_for(client: Any, name: str, version: str) -> CardInputs:
    """Everything a card needs, from the registry: the version's tags and its run's logged files."""
    found = client.get_model_version(name, version)
    run = client.get_run(found.run_id)
    with tempfile.TemporaryDirectory() as tmp:
        frames = {}
        for key, path in LOGGED.items():
            try:
                local = client.download_artifacts(found.run_id, path, tmp)
            except (MlflowException, OSError) as err:
                raise ValueError(f"{name} v{version}: its run has no {path} (registered by an older mmops?): "
                                 "register it again with `mmops stage register`") from err
            frames[key] = pd.read_csv(local, dtype={"sample_id": str}, keep_default_na=False)
        try:
            shift = json.loads(Path(client.download_artifacts(found.run_id, SHIFT, tmp)).read_text())["sets"]
        except (MlflowException, OSError):
            shift = {}
    # the training curves, as register logged them: one `train.<column>` metric per epoch
    history = pd.DataFrame({
        key.removeprefix("train."): pd.Series({m.step: m.value for m in client.get_metric_history(found.run_id, key)})
        for key in sorted(run.data.metrics) if key.startswith("train.")
    }).rename_axis("epoch").reset_index()
    params = dict(run.data.params)
    seen = set(frames["predictions"]["label"])
    # data.labels is logged comma-joined; fall back to the labels seen should a class hold a comma
    classes = params.get("data.labels", "").split(",")
    classes = classes if seen <= set(classes) else sorted(seen)
    return CardInputs(name=name, version=str(version), run_id=found.run_id, predictions=frames["predictions"],
                      history=history, split=frames["split"],
                      params=params, tags={**run.data.tags, **found.tags}, classes=classes, shift=shift)


def publish(client: Any, name: str, version: str, local_copy: Path | None = None) -> str:
    """Build the card, log it to the version's run (replacing any earlier one), link it from the
    version's description, and write `local_copy` if given. Returns the card's artifact URI."""
    inputs = inputs_for(client, name, version)
    drawn = pictures(inputs)
    page = render(inputs, drawn)
    if local_copy is not None:
        artifacts.write_text(local_copy, page)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / CARD
        path.write_text(page, encoding="utf-8")
        client.log_artifact(inputs.run_id, str(path))
        for picture, png in drawn.items():  # the pictures as files too, for the MLflow UI
            (Path(tmp) / picture).write_bytes(png)
            client.log_artifact(inputs.run_id, str(Path(tmp) / picture), artifact_path="model_card")
    uri = f"runs:/{inputs.run_id}/{CARD}"
    client.update_model_version(name, version, description=(
        f"Model card: `{CARD}` in the artifacts of run {inputs.run_id} ({uri}); "
        f"`mmops card {version}` rebuilds it and prints where it is."))
    return uri
