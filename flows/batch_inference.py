"""Batch scoring as a Prefect flow: a manifest in the project's data contract (label optional)
scored by a registered model, one task per chunk of rows.

    python flows/batch_inference.py data/metadata.csv                 # with @champion
    python flows/batch_inference.py new.csv --model models:/mmops-classifier/3 --out artifacts/batch

Image paths are relative to `--root` (default: the manifest's folder). On the command line, paths
are relative to where you are; as flow parameters (a deployment's), relative to the project.
The model must be a registered version of `register.model_name` (by alias or number), and the
output folder must lie under the project: whoever may run the deployment names them. Writes predictions.csv
(label, class probabilities, the explanation by modality), rejects.csv (rows it could not read,
with the reason) and summary.json (counts, throughput, accuracy and macro-F1 when labelled).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

import mlflow.pyfunc
import pandas as pd
from prefect import flow, task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE

from mmops import artifacts
from mmops.config import load_params
from mmops.project import checkout_of, working_in
from mmops.registry.uris import registered_model_uri
from mmops.serving import batch

read = task(batch.read_batch, name="read-manifest", cache_policy=NO_CACHE)
# The registry may be remote: loading is the one step worth retrying.
load = task(mlflow.pyfunc.load_model, name="load-model", cache_policy=NO_CACHE, retries=2, retry_delay_seconds=10)
score = task(batch.score_chunk, name="score-chunk", cache_policy=NO_CACHE)


@flow(name="mmops-batch-inference", log_prints=True)
def batch_inference(manifest: str, model_uri: str = "models:/mmops-classifier@champion", root: str | None = None,
                    out_dir: str = "artifacts/batch", chunk_size: int = 256,
                    params_path: str = "params.yaml", project_dir: str | None = None) -> dict[str, Any]:
    """Score `manifest` with `model_uri` in chunks of `chunk_size` rows (run one after another,
    so memory holds one chunk's media at a time) and write the outputs to `out_dir`."""
    with working_in(project_dir, __file__):
        return _score(manifest, model_uri, root, out_dir, chunk_size, params_path)


def _score(manifest: str, model_uri: str, root: str | None, out_dir: str, chunk_size: int,
           params_path: str) -> dict[str, Any]:
    params = load_params(Path(params_path))
    # deployment parameters come from whoever may run it: a registered model only (loading one
    # runs its logged code), outputs only inside the project
    model_uri = registered_model_uri(model_uri, params.register.model_name)
    out = artifacts.inside(Path.cwd(), out_dir)
    model = load(model_uri)
    rows = read(Path(manifest), params, batch.served_modalities(model))  # the model's own columns
    media_root = Path(root) if root else Path(manifest).parent
    start = time.perf_counter()
    scored, rejected = [], []
    for first in batch.chunk_starts(len(rows), chunk_size):
        predictions, rejects = score(model, rows.iloc[first:first + chunk_size], media_root)
        scored.append(predictions)
        rejected.append(rejects)
    seconds = time.perf_counter() - start
    predictions, rejects = pd.concat(scored, ignore_index=True), pd.concat(rejected, ignore_index=True)
    summary = batch.summarise(predictions, rejects, model.unwrap_python_model().classes, rows=len(rows),
                              chunks=len(scored), seconds=seconds, model_uri=model_uri)
    batch.write_outputs(out, predictions, rejects, summary)
    lines = [f"- **{key}**: {value}" for key, value in summary.items()]
    create_markdown_artifact("\n".join([f"## Batch scoring of `{manifest}`", *lines]), key="batch-inference")
    for line in lines:
        print(line.removeprefix("- "))
    return summary


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("manifest")
    parser.add_argument("--model", default="models:/mmops-classifier@champion")
    parser.add_argument("--root", default=None)
    parser.add_argument("--out", default="artifacts/batch")
    parser.add_argument("--chunk-size", type=int, default=256)
    parser.add_argument("--params", default=str(checkout_of(__file__) / "params.yaml"))
    args = parser.parse_args()
    here = Path.cwd()  # the flow works in the project: pin the command line's paths to where they were typed
    batch_inference(str(here / args.manifest), model_uri=args.model, root=args.root and str(here / args.root),
                    out_dir=str(here / args.out), chunk_size=args.chunk_size, params_path=str(here / args.params))
