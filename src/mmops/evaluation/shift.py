"""How a model holds up on data drawn another way (another vendor's art, other wording): the
fused model and each modality alone scored on a labelled set, and the fusion regret, how far
the best single modality beats the fused model on the same rows (above 0: fusing lost to one
of its own inputs; the seeds promise it never does). Used by the shift stage and the gate."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mmops.config import Params
from mmops.data.manifest import ID, LABEL
from mmops.evaluation.bootstrap import macro_f1
from mmops.evaluation.metrics import classification_metrics
from mmops.models.fusion import FUSED


def fusion_regret(target: np.ndarray, fused: np.ndarray, singles: dict[str, np.ndarray],
                  present: dict[str, np.ndarray], num_classes: int) -> dict[str, Any]:
    """From predicted class indices: for each modality, its accuracy minus the fused model's on
    the rows that have it (`present`; absent from it: every row). The largest (`regret`, with
    `regret_modality`), and the largest in macro-F1 (`regret_macro_f1`); {} with no modality."""
    found: dict[str, tuple[float, float]] = {}
    for name, predicted in singles.items():
        rows = present.get(name, np.ones(len(target), bool))
        if rows.any():
            y = target[rows]
            found[name] = (float((predicted[rows] == y).mean() - (fused[rows] == y).mean()),
                           macro_f1(y, predicted[rows], num_classes) - macro_f1(y, fused[rows], num_classes))
    if not found:
        return {}
    worst = max(found, key=lambda m: found[m][0])
    return {"regret": round(found[worst][0], 4), "regret_modality": worst,
            "regret_macro_f1": round(max(r[1] for r in found.values()), 4)}


def score_set(log_probs: dict[str, np.ndarray], y_true: np.ndarray, present: dict[str, np.ndarray],
              num_classes: int) -> dict[str, Any]:
    """Accuracy, macro-F1 and ECE of each model (`fused` on every row, each modality alone on the
    rows `present` marks as having it) and the fusion regret (`fusion_regret`)."""
    everywhere = np.ones(len(y_true), bool)
    models: dict[str, dict[str, float]] = {}
    for name, lp in log_probs.items():
        rows = present.get(name, everywhere)
        if rows.any():
            models[name] = classification_metrics(y_true[rows], lp[rows].argmax(1), num_classes, np.exp(lp[rows])) \
                | {"samples": int(rows.sum())}
    singles = {name: lp.argmax(1) for name, lp in log_probs.items() if name != FUSED and name in models}
    return {"samples": int(len(y_true)), "models": models,
            **fusion_regret(y_true, log_probs[FUSED].argmax(1), singles, present, num_classes)}


def score_manifest(params: Params, manifest: Path, ckpt: dict[str, Any], test_ids: set[str],
                   model_path: str = "the model") -> dict[str, Any]:
    """The shift stage's report on one labelled set (a manifest in the data contract, media
    relative to its folder) for the model in `ckpt`: rows read and rejected (by reason), and
    `score_set` on all rows and (as `test_ids`) on those whose ids are in the test split. The
    set is encoded by the model's encoders (a fine-tuned one from the weights it carries);
    `model_path` names the model in an encoder mismatch."""
    from mmops.data.clean import read_rows, rejects_by_reason
    from mmops.features.cache import check_encoders
    from mmops.features.shards import encode_manifest
    from mmops.modalities import build_modalities
    from mmops.models.checkpoint import model_from_checkpoint
    from mmops.models.encoders import encode_with_model
    from mmops.models.predict import predict

    model, classes = model_from_checkpoint(ckpt), list(ckpt["classes"])
    rows, rejects = read_rows(params, manifest, labels=classes)
    if rows.empty:
        raise ValueError(f"{manifest}: no row the model can score ({len(rejects)} rejected, e.g. "
                         f"line {rejects['line'].iloc[0]}: {rejects['reason'].iloc[0]})" if len(rejects) else
                         f"{manifest}: no rows")
    cache = encode_manifest(params, rows, manifest.parent, skip=set(ckpt["encoder_weights"]))
    # the model's encoders, not only today's params: the same check evaluate makes
    check_encoders(cache.encoders, ckpt["encoders"], made_by=f"the encoders installed now ({manifest})",
                   expected_by=model_path, ignore=("weights", "dtype", "device"))
    features, present = cache.align(list(rows[ID]), str(manifest))
    for m in build_modalities(params.modalities):  # a fine-tuned encoder encodes with the weights the model carries
        if m.name in ckpt["encoder_weights"]:
            features[m.name] = encode_with_model(m, ckpt, list(rows[m.name]), present[m.name], manifest.parent,
                                                 batch_size=params.featurize.batch_size)
    out = predict(model, features, torch.device("cpu"), present)
    log_probs = {k: v.numpy() for k, v in out.log_probs.items()}
    has = {k: v.numpy() for k, v in present.items()}
    y = np.array([classes.index(label) for label in rows[LABEL]])
    in_test = rows[ID].isin(test_ids).to_numpy()
    report = {"manifest": str(manifest), "rows": int(len(rows) + len(rejects)), "rejected": int(len(rejects)),
              "rejects_by_reason": rejects_by_reason(rejects),
              "all": score_set(log_probs, y, has, len(classes))}
    if in_test.any():
        report["test_ids"] = score_set({k: v[in_test] for k, v in log_probs.items()}, y[in_test],
                                       {k: v[in_test] for k, v in has.items()}, len(classes))
    return report


def table_rows(report: dict[str, Any]) -> Iterable[dict[str, Any]]:
    """One row per set, subset of rows (`all`, `test_ids`) and model: the shift stage's table
    (for `dvc plots`)."""
    for name, scored in report.items():
        for subset in ("all", "test_ids"):
            for model_name, scores in scored.get(subset, {}).get("models", {}).items():
                yield {"set": name, "rows": subset, "model": model_name,
                       "scored": f"{name} {subset.replace('_', ' ')} {model_name}", **scores}
