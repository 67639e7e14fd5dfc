"""flows/batch_inference.py on a registered model: one Prefect task per chunk, every readable row
scored with its explanation, unreadable rows listed, scores when labelled."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import pandas as pd
import pytest

from tests.conftest import write_manifest
from tests.integration.conftest import dvc, tracking_uri

pytestmark = pytest.mark.slow


def test_batch_flow_scores_a_manifest_in_chunks_listing_what_it_cannot_read(project_template, tmp_path,
                                                                            prefect_server, monkeypatch):
    from prefect import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId
    from prefect.client.schemas.sorting import TaskRunSort

    project = Path(shutil.copytree(project_template, tmp_path / "p", symlinks=True))
    assert dvc(project, "repro", check=False).returncode == 0
    from flows.batch_inference import batch_inference

    monkeypatch.setenv("MLFLOW_TRACKING_URI", tracking_uri(project))
    rows = pd.read_csv(project / "data/metadata.csv", dtype=str, keep_default_na=False).to_dict("records")
    rows.insert(5, {**rows[0], "sample_id": "gone", "image": "images/nowhere.png"})
    rows.insert(9, {**rows[1], "sample_id": "blank", "image": "", "text": ""})
    write_manifest(project / "data" / "to_score.csv", rows)

    # run from elsewhere, as a deployment's worker would: paths are the project's
    monkeypatch.chdir(tmp_path)
    summary = batch_inference("data/to_score.csv", model_uri="models:/mmops-classifier@challenger",
                              out_dir="artifacts/batch", chunk_size=20, project_dir=str(project), return_state=True)
    flow_run_id = summary.state_details.flow_run_id
    summary = summary.result()

    predictions = pd.read_csv(project / "artifacts/batch/predictions.csv", dtype={"sample_id": str})
    rejects = pd.read_csv(project / "artifacts/batch/rejects.csv", dtype=str)
    assert dict(zip(rejects["sample_id"], rejects["reason"])) == {
        "gone": "image: image file not found", "blank": "no modality: every one is empty"}
    assert len(predictions) == len(rows) - 2 == summary["scored"]
    labels = [c.removeprefix("p.") for c in predictions.columns if c.startswith("p.")]
    assert predictions[[f"p.{c}" for c in labels]].sum(axis=1).round(4).eq(1).all()
    assert (predictions["image.share"] + predictions["text.share"] - predictions["confidence"]).abs().max() < 1e-5
    assert summary["accuracy"] == pytest.approx((predictions["actual"] == predictions["label"]).mean())
    assert json.loads((project / "artifacts/batch/summary.json").read_text()) == summary

    async def chunk_tasks() -> list[str]:
        async with get_client() as client:
            runs = await client.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id])),
                                               sort=TaskRunSort.EXPECTED_START_TIME_ASC, limit=200)
            return [r.name for r in runs if r.name.startswith("score-chunk")]

    import asyncio

    assert len(asyncio.run(chunk_tasks())) == math.ceil(len(rows) / 20) == summary["chunks"]


def test_batch_flow_refuses_a_model_that_is_not_registered_and_an_output_outside_the_project(tmp_path, prefect_server):
    from flows.batch_inference import batch_inference

    project = Path(__file__).resolve().parents[2]
    with pytest.raises(ValueError, match="only a registered version of mmops-classifier"):
        batch_inference("data/metadata.csv", model_uri="runs:/0123/model", project_dir=str(project))
    with pytest.raises(ValueError, match="must be under the project"):
        batch_inference("data/metadata.csv", out_dir=str(tmp_path), project_dir=str(project))
