"""Release: register the trained model in MLflow, and the gate that promotes it (or rolls back)."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import pandas as pd

from mmops import artifacts
from mmops.config import Layout, Params
from mmops.modalities import build_modalities, requests_for


def dvc_file_of(params: Params) -> Path:
    """The `.dvc` file that versions `data.root`; lineage quotes it, so it must exist."""
    root = Path(params.data.root)
    dvc_file = root.parent / f"{root.name}.dvc"
    if not dvc_file.is_file():
        raise ValueError(f"params.yaml 'data.root' ({root}) is not versioned by DVC: no {dvc_file}. "
                         f"Run `dvc add {root}` so the model's lineage can name its data version")
    return dvc_file


def write_data_report(params: Params, layout: Layout) -> Path:
    """One offline HTML page of the three suites' results (raw manifest, cleaned manifest,
    feature cache) and of clean's rejects, logged with the run."""
    from mmops.data.expectations import SuiteResult, render_html

    results = [SuiteResult.from_dict(json.loads(path.read_text()))
               for path in (layout.validation, layout.clean_expectations, layout.feature_expectations)]
    rejects = artifacts.read_csv(layout.rejects)
    return artifacts.write_text(layout.data_report, render_html(results, f"Data checks: {params.data.manifest}",
                                                                rejects))


def drift_tags(layout: Layout) -> dict[str, str]:
    """This data version's drift against the last training's, one line per record, as run tags
    (the model card shows them): `mmops.drift.validate` (labels, measures), `mmops.drift.features`."""
    from mmops.data.drift import summarise

    records = {"mmops.drift.validate": layout.drift, "mmops.drift.features": layout.feature_drift}
    # MLflow caps a tag's value (5,000 characters in older stores): the files hold every check
    return {tag: summarise(json.loads(path.read_text()))[:4000] for tag, path in records.items() if path.exists()}


def _committed(commit: str) -> bool:
    return commit != "unknown" and not commit.endswith("-dirty")


def shift_metrics(layout: Layout) -> dict[str, float]:
    """The shift stage's numbers as MLflow metrics (`shift_<set>_<rows>_<model>_<score>` and
    `shift_<set>_<rows>_regret`); none where it has not run (a stage called directly)."""
    if not layout.shift_metrics.exists():
        return {}
    out = {}
    for name, found in json.loads(layout.shift_metrics.read_text())["sets"].items():
        for rows in ("all", "test_ids"):
            scored = found.get(rows, {})
            for model, scores in scored.get("models", {}).items():
                out |= {f"shift_{name}_{rows}_{model}_{k}": v for k, v in scores.items()}
            out |= {f"shift_{name}_{rows}_{k}": scored[k] for k in ("regret", "regret_macro_f1") if k in scored}
    return out


def _unregistrable(params: Params, tags: dict[str, str], dvc_file: Path) -> str | None:
    """Why this run's model cannot be rebuilt from its lineage (None: it can). Only asked when
    `register.require_committed`: code, params or data that no commit records."""
    from mmops.data.versioning import workspace_matches

    if not params.register.require_committed:
        return None
    if not _committed(tags["mmops.git_commit"]):
        return (f"the tree has uncommitted changes (git status) or is not a git repository "
                f"({tags['mmops.git_commit']}): commit them, then `mmops stage register`")
    if not workspace_matches(dvc_file):
        return (f"{params.data.root} is not what {dvc_file.name} records (`dvc status {dvc_file.name}`): either "
                f"`dvc checkout {dvc_file.name}` to train on the recorded data, or `dvc add {params.data.root}` and "
                f"commit {dvc_file.name} to version the new data; then `dvc repro`")
    return None


def register(params: Params, layout: Layout, *, stage: str = "register", flow_run_id: str | None = None) -> dict[str, Any]:
    """Log the pipeline run to MLflow with its lineage and register the model (alias
    `challenger`), unless `register.require_committed` and the tree has uncommitted changes:
    then nothing is registered and the record says why."""
    import mmops
    from mmops.registry.lineage import lineage_tags
    from mlflow import MlflowClient

    from mmops.registry.card import publish as publish_card
    from mmops.registry.mlflow_registry import log_and_register

    dvc_file = dvc_file_of(params)
    tags = lineage_tags(dvc_file=dvc_file, params_digest=params.digest(), stage=stage, flow_run_id=flow_run_id)
    # The stage's DVC output: the same inputs give the same bytes, so dvc.lock does not change,
    # yet a fresh clone lacks it and DVC runs register there (the record below has run ids).
    artifacts.write_json(layout.register_inputs, {
        "model_name": params.register.model_name, "alias": params.register.alias,
        "params_hash": tags["mmops.params_hash"], "data_md5": tags["mmops.data_md5"],
    })
    write_data_report(params, layout)
    reason = _unregistrable(params, tags, dvc_file)
    if reason:
        record = {"registered": False, "reason": reason, **tags}
        artifacts.write_json(layout.registered, record)
        return record
    modalities = build_modalities(params.modalities)
    metrics = json.loads(layout.metrics.read_text())
    flat = {f"test_{m}_{k}": v for m, scores in metrics["test"].items() for k, v in scores.items()}
    flat |= {f"retrieval_{pair.replace('->', '_to_')}_{k.replace('@', '_at_')}": v
             for pair, found in metrics.get("retrieval", {}).items() for k, v in found.items()}
    flat |= shift_metrics(layout)
    example = artifacts.read_csv(layout.split_manifest).query("split == 'test'").head(2)
    input_example = requests_for(example, modalities, params.data.root)
    registered = log_and_register(
        model_name=params.register.model_name,
        experiment=params.register.experiment,
        alias=params.register.alias,
        params=params.to_dict(),
        metrics=flat,
        history=pd.read_csv(layout.history),
        tags={**tags, **drift_tags(layout)},
        checkpoint=layout.model,
        input_example=input_example,
        modalities=[m.name for m in modalities],
        encoder_packages=[p for m in modalities for p in m.encoders[m.spec.encoder].packages],
        # the split manifest: the gate scores champion and challenger on this exact test split
        artifacts=[layout.metrics, layout.confusion, layout.predictions, layout.validation,
                   layout.validation_report, layout.rejects, layout.clean_metrics, layout.clean_expectations,
                   layout.feature_expectations, layout.data_report, layout.split_manifest, layout.split_metrics,
                   layout.split_groups, layout.drift, layout.feature_drift,  # drift, shift: logged where recorded
                   layout.shift_metrics, layout.shift_scores],
        code_dir=Path(mmops.__file__).parent,
        model_config=dataclasses.asdict(params.serve),
        # a retried registration inside one flow run finishes the first attempt's version
        attempt_key=f"{flow_run_id}:{tags['mmops.params_hash']}:{tags['mmops.data_md5']}" if flow_run_id else None,
    )
    card = publish_card(MlflowClient(), registered.name, registered.version)
    record = {
        "registered": True, "name": registered.name, "version": registered.version, "alias": registered.alias,
        "uri": registered.uri, "run_id": registered.run_id, "experiment_id": registered.experiment_id,
        "tracking_uri": registered.tracking_uri, "model_card": card, **tags,
    }
    artifacts.write_json(layout.registered, record)
    return record


def promote(params: Params) -> dict[str, Any]:
    """The gate: the current challenger against the current champion, on the challenger's own
    test split; promote (champion -> challenger, previous -> old champion) or refuse, recorded."""
    from mlflow import MlflowClient

    from mmops.registry.card import publish as publish_card
    from mmops.registry.promotion import promote as run_gate

    outcome = run_gate(params, dvc_file=dvc_file_of(params), modalities=build_modalities(params.modalities))
    if outcome.decision is not None:  # the challenger's card now shows the gate's decision
        publish_card(MlflowClient(), params.register.model_name, outcome.challenger)
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
