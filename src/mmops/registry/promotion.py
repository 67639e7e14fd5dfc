"""Promotion in the MLflow registry: score challenger and champion through their registered
pyfuncs on the challenger's own test split (and on each shift set's rows of it), let the gate decide, move the aliases so that a
failure part-way leaves `champion` as it was, and record every decision (and rollback) in the
registry itself: tags on the versions and one run per decision in an experiment of its own."""

from __future__ import annotations

import pickle
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import pandas as pd
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

from mmops.config import Params
from mmops.data.clean import hash_column
from mmops.data.clean import read_rows
from mmops.data.manifest import ID, LABEL
from mmops.data.split import near_duplicate_links
from mmops.data.versioning import data_md5
from mmops.modalities import requests_for
from mmops.modalities.base import Modality, present
from mmops.registry.gate import UNKNOWN, Decision, Evaluation, ShiftEvaluation, decide

SPLIT_ARTIFACT = "pipeline/split/manifest.csv"  # logged by the register stage
LATENCY_RECORDS = 30
SCORING_SCRIPT = Path(__file__).with_name("own_code_scoring.py")


@dataclass(frozen=True)
class Outcome:
    action: str  # promote | refuse | rollback
    challenger: str | None
    champion_before: str | None
    champion_after: str | None
    decision: Decision | None
    run_id: str


def _alias(client: MlflowClient, name: str, alias: str) -> str | None:
    try:
        return str(client.get_model_version_by_alias(name, alias).version)
    except MlflowException:
        return None


def split_of_run(client: MlflowClient, run_id: str) -> pd.DataFrame:
    """The split manifest a version was trained with (logged with its run): every row, its
    group and its split."""
    try:
        local = client.download_artifacts(run_id, SPLIT_ARTIFACT)
    except MlflowException as err:
        raise ValueError(f"run {run_id} has no {SPLIT_ARTIFACT} (registered by an older mmops?): "
                         f"register it again with `mmops stage register`") from err
    return pd.read_csv(local, dtype=str, keep_default_na=False)


def test_split_of(client: MlflowClient, run_id: str) -> pd.DataFrame:
    """The test rows of the split a version was trained with."""
    frame = split_of_run(client, run_id)
    return frame[frame["split"] == "test"].reset_index(drop=True)


def unseen_rows(test: pd.DataFrame, seen: pd.DataFrame, modalities: Sequence[Modality],
                near_duplicate_distance: int) -> np.ndarray:
    """Which rows of `test` belong to a group that shares nothing with `seen` (another model's
    train and val rows): no sample id, no media file, no family, no near-duplicate picture or clip. One
    link condemns the row's whole group, as the split would have grouped it. Another data
    version, another salt or a merged group can all put a champion's training rows in a
    challenger's test split; scoring it there would flatter the champion."""
    hit = test[ID].isin(set(seen[ID])).to_numpy().copy()
    columns = [hash_column(m.name) for m in modalities if m.media] + ["family"]
    for column in [c for c in columns if c in test.columns and c in seen.columns]:
        known = set(seen[column]) - {""}
        hit |= (test[column].isin(known) & test[column].ne("")).to_numpy()
    for m in modalities:
        column = f"{m.name}_{m.near_duplicate_fact}"
        if m.near_duplicate_fact and column in test.columns and column in seen.columns:
            hashes = list(test[column]) + list(seen[column])
            for i, j in near_duplicate_links(hashes, m.near_duplicate_distance(near_duplicate_distance)):
                if i < len(test) <= j:
                    hit[i] = True
    return ~test["group"].isin(set(test.loc[hit, "group"])).to_numpy()


def score_version(uri: str, version: str, requests: pd.DataFrame, labels: Sequence[str],
                  order: Sequence[str] | None = None) -> Evaluation:
    """Per-sample predictions of a registered model through its own pyfunc, run with its own
    logged code in a process of its own (`own_code_scoring.py`): all modalities, then each
    alone where present; its classes; and its one-record p95 latency. Labels, true and
    predicted, are indexed in `order` (default: the model's own classes), UNKNOWN for one
    outside it: a champion is indexed in its challenger's order, so both compare row by row."""
    alone = {column: requests[column].map(present).to_numpy() for column in requests.columns}
    with tempfile.TemporaryDirectory() as tmp:
        job, out = Path(tmp) / "job.pkl", Path(tmp) / "out.pkl"
        job.write_bytes(pickle.dumps({"requests": requests, "alone": alone, "latency_records": LATENCY_RECORDS}))
        # -P: the script's folder stays off sys.path, so nothing of today's mmops is importable by accident
        done = subprocess.run([sys.executable, "-P", str(SCORING_SCRIPT), uri, str(job), str(out)],
                              capture_output=True, text=True)
        if done.returncode != 0:
            last = (done.stderr.strip().splitlines() or ["(no output)"])[-1]
            raise RuntimeError(f"scoring {uri} with its own code failed: {last}")
        scored = pickle.loads(out.read_bytes())
    if not scored["classes"]:
        raise ValueError(f"{uri} does not say which classes it was trained on (registered by an older mmops?): "
                         "register it again with `mmops stage register`")
    classes = tuple(scored["classes"])
    index = {c: i for i, c in enumerate(order or classes)}

    def indices(answers: Sequence[str]) -> np.ndarray:
        return np.array([index.get(answer, UNKNOWN) for answer in answers], dtype=int)

    modalities = {}
    for column, rows in alone.items():
        # rows where the modality is absent are never scored (Evaluation.present), whatever they hold
        modalities[column] = np.full(len(requests), UNKNOWN)
        modalities[column][rows] = indices(scored["alone"][column])
    return Evaluation(version=version, target=indices(labels), fused=indices(scored["fused"]),
                      modalities=modalities, p95_latency_ms=float(np.percentile(scored["timings_ms"], 95)),
                      classes=classes, present=alone)


def shift_evaluations(params: Params, modalities: Sequence[Modality], split: pd.DataFrame, unseen: np.ndarray | None,
                      challenger: tuple[str, str], champion: tuple[str, str] | None,
                      classes: Sequence[str]) -> tuple[ShiftEvaluation, ...]:
    """Each set of `shift.sets` scored like the test split, through each model's own pyfunc
    (`challenger` and `champion`: (uri, version)), on its rows whose ids are in the challenger's
    test `split` (the rest redraw what it trained or was selected on); `unseen` (the split's rows
    the champion never saw) is carried over by id. An absent set, or one with no such row, is
    named and not judged."""
    out = []
    for name, manifest in params.shift.sets.items():
        manifest = Path(manifest)
        if not manifest.exists():
            out.append(ShiftEvaluation(name, skipped=f"{manifest} is absent"))
            continue
        rows, _ = read_rows(params, manifest, labels=classes)
        rows = rows[rows[ID].isin(set(split[ID]))].reset_index(drop=True)
        if rows.empty:
            out.append(ShiftEvaluation(name, skipped=f"{manifest} has no scorable row with an id of the test split"))
            continue
        requests = requests_for(rows, modalities, manifest.parent)
        ours = score_version(challenger[0], challenger[1], requests, rows[LABEL])
        theirs = score_version(champion[0], champion[1], requests, rows[LABEL], ours.classes) if champion else None
        never_seen = None if unseen is None else rows[ID].isin(set(split.loc[unseen, ID])).to_numpy()
        out.append(ShiftEvaluation(name, ours, theirs, never_seen))
    return tuple(out)


def _point(client: MlflowClient, name: str, alias: str, version: str | None) -> None:
    """Point `alias` at `version`; None deletes it."""
    if version is None:
        client.delete_registered_model_alias(name, alias)
    else:
        client.set_registered_model_alias(name, alias, version)


def _move_aliases(client: MlflowClient, name: str, moves: list[tuple[str, str | None]]) -> None:
    """Point each alias at its version (None: delete it), in order; if any move fails, put back
    the ones already made, so the registry is left as it was."""
    before = [(alias, _alias(client, name, alias)) for alias, _ in moves]
    done = []
    try:
        for alias, version in moves:
            _point(client, name, alias, version)
            done.append(alias)
    except Exception:
        for alias, version in reversed(before):
            if alias in done:
                _point(client, name, alias, version)
        raise


def _record(client: MlflowClient, params: Params, tags: dict[str, str], numbers: dict[str, float]) -> str:
    """One run in the promotions experiment, with the decision as tags and its numbers as metrics."""
    experiment = client.get_experiment_by_name(params.promote.experiment)
    experiment_id = experiment.experiment_id if experiment else client.create_experiment(params.promote.experiment)
    run = client.create_run(experiment_id, tags=tags, run_name=f"{tags['mmops.action']} v{tags.get('mmops.challenger', '')}")
    for key, value in numbers.items():
        client.log_metric(run.info.run_id, key, float(value))
    return run.info.run_id


def _log_evaluation(client: MlflowClient, run_id: str, evaluation: Evaluation) -> None:
    """MLflow's own classifier evaluation of the challenger's fused predictions, logged to the
    decision run (metrics, per-class metrics, confusion matrix), so the MLflow UI shows them.
    The gate's floors and paired test stay in `gate.decide`: they need per-sample resampling."""
    names = np.array([*evaluation.classes, "(unknown)"])  # index UNKNOWN (-1): a label outside the classes
    frame = pd.DataFrame({"label": names[evaluation.target], "prediction": names[evaluation.fused]})
    # MLflow resumes a run only inside the active experiment (register may have set another)
    mlflow.set_experiment(experiment_id=client.get_run(run_id).info.experiment_id)
    with mlflow.start_run(run_id=run_id):
        mlflow.models.evaluate(data=frame, targets="label", predictions="prediction", model_type="classifier",
                               evaluator_config={"log_model_explainability": False, "average": "macro"})


def promote(params: Params, *, dvc_file: Path, modalities: Sequence[Modality],
            client: MlflowClient | None = None) -> Outcome:
    """Run the gate on the current challenger against the current champion, and promote or refuse.
    Both are scored on the challenger's test split; the comparison keeps the rows whose groups
    the champion never trained or validated on (`unseen_rows`)."""
    client = client or MlflowClient()
    name, gate = params.register.model_name, params.promote
    challenger = _alias(client, name, params.register.alias)
    if challenger is None:
        raise ValueError(f"no version of {name} has the alias '{params.register.alias}': run the pipeline first")
    champion = _alias(client, name, gate.champion_alias)
    if champion == challenger:  # nothing new since the last decision (a schedule may ask twice)
        return Outcome("unchanged", challenger, champion, champion, None, "")
    version = client.get_model_version(name, challenger)
    trained_on, here = version.tags.get("mmops.data_md5"), data_md5(dvc_file)
    if trained_on != here:
        raise ValueError(f"{name} v{challenger} was trained on data {trained_on}, but {dvc_file} records {here}: "
                         f"check out the data it was trained on (git checkout <its commit> {dvc_file} && dvc checkout)")
    split = test_split_of(client, version.run_id)
    requests = requests_for(split, modalities, params.data.root)
    scored = score_version(f"models:/{name}/{challenger}", challenger, requests, split[LABEL])
    if (scored.target == UNKNOWN).any():
        raise ValueError(f"{name} v{challenger}'s own test split has labels outside its classes {list(scored.classes)}")
    baseline, unseen = None, None
    if champion:
        baseline = score_version(f"models:/{name}/{champion}", champion, requests, split[LABEL], scored.classes)
        trained = split_of_run(client, client.get_model_version(name, champion).run_id)
        unseen = unseen_rows(split, trained[trained["split"] != "test"], modalities,
                             params.split.near_duplicate_distance)
    groups = split["group"].to_numpy() if "group" in split.columns else None
    shifts = shift_evaluations(params, modalities, split, unseen, (f"models:/{name}/{challenger}", challenger),
                               (f"models:/{name}/{champion}", champion) if champion else None, scored.classes)
    decision = decide(scored, baseline, gate, groups=groups, unseen=unseen, shifts=shifts)
    action = "promote" if decision.promote else "refuse"
    tags = {"mmops.action": action, "mmops.challenger": challenger, "mmops.champion_before": champion or "none",
            "mmops.reason": decision.summary, "mmops.checks": "\n".join(decision.reasons),
            "mmops.test_samples": str(len(split)), "mmops.data_md5": here}
    run_id = _record(client, params, tags, decision.numbers)
    _log_evaluation(client, run_id, scored)
    after = champion
    try:
        if decision.promote:
            _move_aliases(client, name, [(gate.previous_alias, champion), (gate.champion_alias, challenger)])
            after = challenger
    except Exception as err:
        client.set_tag(run_id, "mmops.action", "failed")
        client.set_tag(run_id, "mmops.reason", f"alias move failed, registry unchanged: {err}")
        client.set_terminated(run_id, "FAILED")
        raise
    client.set_tag(run_id, "mmops.champion_after", after or "none")
    client.set_terminated(run_id, "FINISHED")
    for key, value in {"mmops.gate.decision": action, "mmops.gate.reason": decision.summary,
                       "mmops.gate.run_id": run_id}.items():
        client.set_model_version_tag(name, challenger, key, value)
    return Outcome(action, challenger, champion, after, decision, run_id)


def rollback(params: Params, client: MlflowClient | None = None) -> Outcome:
    """Swap `champion` and `previous` back, and record it."""
    client = client or MlflowClient()
    name, gate = params.register.model_name, params.promote
    champion, previous = _alias(client, name, gate.champion_alias), _alias(client, name, gate.previous_alias)
    if previous is None:
        raise ValueError(f"{name} has no '{gate.previous_alias}' version to roll back to")
    _move_aliases(client, name, [(gate.champion_alias, previous), (gate.previous_alias, champion)])
    tags = {"mmops.action": "rollback", "mmops.challenger": previous, "mmops.champion_before": champion or "none",
            "mmops.champion_after": previous, "mmops.reason": f"rolled back from v{champion} to v{previous}"}
    run_id = _record(client, params, tags, {})
    client.set_terminated(run_id, "FINISHED")
    return Outcome("rollback", previous, champion, previous, None, run_id)


def history(params: Params, client: MlflowClient | None = None) -> list[dict[str, Any]]:
    """Every recorded decision and rollback, oldest first."""
    client = client or MlflowClient()
    experiment = client.get_experiment_by_name(params.promote.experiment)
    if experiment is None:
        return []
    runs = client.search_runs([experiment.experiment_id], order_by=["attributes.start_time ASC"], max_results=10_000)
    return [{"time": pd.Timestamp(run.info.start_time, unit="ms").strftime("%Y-%m-%d %H:%M:%S"),
             "action": run.data.tags.get("mmops.action", "?"), "version": run.data.tags.get("mmops.challenger", "?"),
             "champion_before": run.data.tags.get("mmops.champion_before", "?"),
             "champion_after": run.data.tags.get("mmops.champion_after", "?"),
             "reason": run.data.tags.get("mmops.reason", ""), "run_id": run.info.run_id} for run in runs]
