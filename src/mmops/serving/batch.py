"""Batch scoring: a manifest in the project's data contract (its label column optional) scored by
a registered model, one chunk of rows at a time. Rows that cannot be read are listed with their
reason and the rest are still scored. `flows/batch_inference.py` runs this as a Prefect flow."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from mmops import artifacts
from mmops.config import Params
from mmops.data.manifest import ID, LABEL, LINE, ManifestError, read_manifest, source_names
from mmops.evaluation.metrics import classification_metrics
from mmops.modalities import requests_for
from mmops.modalities.base import Modality, present
from mmops.serving.explain import as_columns

REJECT_COLUMNS = [ID, LINE, "reason"]


def served_modalities(model: Any) -> tuple[Modality, ...]:
    """The modalities a loaded model (`mlflow.pyfunc.load_model`) was trained with, with their
    own columns and limits: a batch is read and checked by these, never by today's params.yaml,
    which may have changed since the model was registered."""
    return tuple(model.unwrap_python_model().modalities)


def read_batch(manifest: Path, params: Params, modalities: Sequence[Modality] | None = None) -> pd.DataFrame:
    """The manifest with the canonical column names (`sample_id`, each modality, `label` when
    there is one) and each row's `line`; raises `ManifestError` naming the file. `modalities`:
    the model's (`served_modalities`); None reads params.yaml's (before any model is loaded)."""
    specs = [m.spec for m in modalities] if modalities is not None else list(params.modalities)
    frame = read_manifest(manifest, source_names(params.data, specs))
    names = [m.name for m in specs]
    if ID not in frame.columns or not set(names) & set(frame.columns):
        raise ManifestError(f"{manifest}: needs the '{params.data.columns.id}' column and at least one of "
                            + ", ".join(f"'{m.column}'" for m in specs))
    return frame


def problem(row: pd.Series, root: Path, modalities: Sequence[Modality]) -> str | None:
    """Why this row cannot be scored (any modality may be absent, not all), or None."""
    values = {m.name: row.get(m.name) for m in modalities}
    if not any(present(v) for v in values.values()):
        return "no modality: every one is empty"
    for m in modalities:
        if present(values[m.name]):
            reason = m.problem(values[m.name], root)
            if reason is not None:
                return f"{m.name}: {reason}"
    return None


def score_chunk(model: Any, rows: pd.DataFrame, root: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Score `rows` with `model` (a loaded pyfunc): (predictions, rejects). Predictions carry
    `sample_id`, `line`, `actual` (when labelled) and the served answer as columns."""
    modalities = served_modalities(model)
    # the full check (images decoded) by the model's own rules first, so a row it would refuse
    # is listed, not the chunk refused
    reasons = [problem(row, root, modalities) for _, row in rows.iterrows()]
    bad = np.array([r is not None for r in reasons], dtype=bool)
    rejects = rows.loc[bad, [ID, LINE]].assign(reason=[r for r in reasons if r is not None])
    good = rows.loc[~bad]
    if good.empty:
        return pd.DataFrame(), rejects
    answered = as_columns(model.predict(requests_for(good, modalities, root)))
    head = good[[ID, LINE]].reset_index(drop=True)
    if LABEL in good.columns:
        head["actual"] = good[LABEL].to_numpy()
    return pd.concat([head, answered.reset_index(drop=True)], axis=1), rejects


def chunk_starts(rows: int, chunk_size: int) -> range:
    """Where each chunk of `chunk_size` rows starts."""
    return range(0, rows, chunk_size)


def summarise(predictions: pd.DataFrame, rejects: pd.DataFrame, classes: Sequence[str], *, rows: int,
              chunks: int, seconds: float, model_uri: str) -> dict[str, Any]:
    """Counts, throughput, and accuracy / macro-F1 over the scored rows whose label the model
    knows (when the manifest has labels)."""
    summary: dict[str, Any] = {
        "model": model_uri, "rows": rows, "scored": len(predictions), "rejected": len(rejects), "chunks": chunks,
        "seconds": round(seconds, 3), "rows_per_second": round(len(predictions) / seconds, 1) if seconds else math.nan,
        "rejects_by_reason": rejects["reason"].map(lambda r: ": ".join(r.split(": ")[:2])).value_counts().to_dict(),
    }
    if "actual" in predictions.columns:
        index = {c: i for i, c in enumerate(classes)}
        known = predictions["actual"].isin(index)
        y_true = predictions.loc[known, "actual"].map(index).to_numpy()
        y_pred = predictions.loc[known, "label"].map(index).to_numpy()
        summary["labelled"] = int(known.sum())
        summary["labels_unknown_to_the_model"] = int((~known).sum())
        if known.any():
            summary |= classification_metrics(y_true, y_pred, len(classes))
    return summary


def write_outputs(out_dir: Path, predictions: pd.DataFrame, rejects: pd.DataFrame, summary: dict[str, Any]) -> dict[str, Path]:
    """`predictions.csv`, `rejects.csv` and `summary.json` under `out_dir`, each written atomically."""
    out_dir = Path(out_dir)
    return {
        "predictions": artifacts.write_csv(out_dir / "predictions.csv", predictions),
        "rejects": artifacts.write_csv(out_dir / "rejects.csv", rejects.reindex(columns=REJECT_COLUMNS)),
        "summary": artifacts.write_json(out_dir / "summary.json", summary),
    }
