"""MLflow: one run per pipeline run, the model registered as a new version with an alias.

The tracking store is MLflow's own default (`sqlite:///mlflow.db` in the working directory)
unless `MLFLOW_TRACKING_URI` points elsewhere, e.g. a team server.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib.metadata import version
from pathlib import Path
from typing import Any

import mlflow
import pandas as pd
from mlflow import MlflowClient
from mlflow.models import ModelSignature
from mlflow.types import ColSpec, Schema
from mlflow.types.schema import Array, Map, Object, Property

from mmops.registry.lineage import redact_uri

# What the served model imports besides its encoders' packages (which each modality names);
# all pinned to the versions it was trained with.
# On the run of each registration attempt made inside a flow run: a retry finds it.
ATTEMPT_TAG = "mmops.registration_attempt"
SERVING_REQUIREMENTS = ("torch", "torchvision", "pandas", "numpy", "pillow", "pyyaml", "scikit-learn", "mlflow")


@dataclass(frozen=True)
class RegisteredModel:
    name: str
    version: str
    alias: str
    run_id: str
    experiment_id: str
    tracking_uri: str

    @property
    def uri(self) -> str:
        return f"models:/{self.name}@{self.alias}"


def signature(modalities: list[str]) -> ModelSignature:
    """Raw inputs, one string column per modality (media as base64), each optional per
    request; out, the answer `mmops.serving.explain.answers` builds."""
    inputs = Schema([ColSpec("string", name, required=False) for name in modalities])
    own = Object([Property("label", "string"), Property("probability", "double"),
                  Property("share", "double", required=False)])
    outputs = Schema([
        ColSpec("string", "label"),
        ColSpec("double", "confidence"),
        ColSpec(Map("double"), "probabilities"),
        ColSpec(Array("string"), "modalities"),
        ColSpec(Map(own), "explanation"),
    ])
    return ModelSignature(inputs=inputs, outputs=outputs)


def _flatten(prefix: str, value: Any, out: dict[str, Any]) -> dict[str, Any]:
    if isinstance(value, dict):
        for key, item in value.items():
            _flatten(f"{prefix}.{key}" if prefix else str(key), item, out)
    elif isinstance(value, list):
        out[prefix] = ",".join(map(str, value))[:6000]
    else:
        out[prefix] = value
    return out


def log_and_register(
    *,
    model_name: str,
    experiment: str,
    alias: str,
    params: dict[str, Any],
    metrics: dict[str, float],
    history: pd.DataFrame,
    tags: dict[str, str],
    checkpoint: Path,
    input_example: pd.DataFrame,
    modalities: list[str],
    encoder_packages: list[str],
    artifacts: list[Path],
    code_dir: Path,
    model_config: dict[str, Any],
    attempt_key: str | None = None,
) -> RegisteredModel:
    """Log a run (params, metrics, training curves, artifacts, lineage tags), log the pyfunc
    model, register it as a new version of `model_name` and point `alias` at it.

    With an `attempt_key` (one per flow run's registration) this is safe to retry: when an
    earlier attempt with the same key already created the version, that version is finished
    (tags, alias) instead of logging a second run and version."""
    from mmops.serving import pyfunc

    client = MlflowClient()
    experiment_id = mlflow.set_experiment(experiment).experiment_id
    if attempt_key and (earlier := registered_by_attempt(client, model_name, experiment_id, attempt_key)):
        return _finish(client, earlier.name, str(earlier.version), earlier.run_id, experiment_id, alias, tags)
    run_tags = {**tags, ATTEMPT_TAG: attempt_key} if attempt_key else tags
    with mlflow.start_run(tags=run_tags) as run:
        mlflow.log_params(_flatten("", params, {}))
        mlflow.log_metrics(metrics)
        for _, row in history.iterrows():
            step = int(row["epoch"])
            mlflow.log_metrics({f"train.{k}": float(v) for k, v in row.items() if k != "epoch"}, step=step)
        for path in artifacts:  # under pipeline/<stage>/, as in artifacts/ (two stages write metrics.json)
            if Path(path).exists():
                mlflow.log_artifact(str(path), artifact_path=f"pipeline/{Path(path).parent.name}")
        info = mlflow.pyfunc.log_model(
            name="model",
            python_model=pyfunc.MODEL_CODE,  # models-from-code: nothing is pickled
            artifacts={"checkpoint": str(checkpoint)},
            model_config=model_config,  # what the served model reads at load (its request limits)
            code_paths=[str(code_dir)],
            signature=signature(modalities),
            input_example=input_example,
            pip_requirements=[f"{dist}=={version(dist)}"
                              for dist in dict.fromkeys([*SERVING_REQUIREMENTS, *encoder_packages])],
            registered_model_name=model_name,
            tags=tags,
        )
    return _finish(client, model_name, str(info.registered_model_version), run.info.run_id, experiment_id, alias, tags)


def registered_by_attempt(client: MlflowClient, model_name: str, experiment_id: str, attempt_key: str) -> Any:
    """The model version an earlier attempt with `attempt_key` registered, if it got that far."""
    runs = client.search_runs([experiment_id], filter_string=f"tags.`{ATTEMPT_TAG}` = '{attempt_key}'")
    for run in runs:
        found = client.search_model_versions(f"name = '{model_name}' and run_id = '{run.info.run_id}'")
        if found:
            return found[0]
    return None


def _finish(client: MlflowClient, name: str, version: str, run_id: str, experiment_id: str, alias: str,
            tags: dict[str, str]) -> RegisteredModel:
    """Tag the version with its lineage and point `alias` at it: each call idempotent."""
    for key, value in tags.items():
        client.set_model_version_tag(name, version, key, value)
    client.set_registered_model_alias(name, alias, version)
    # the URI is printed and written to model_version.json: never with its credentials
    return RegisteredModel(name=name, version=version, alias=alias, run_id=run_id,
                           experiment_id=experiment_id, tracking_uri=redact_uri(mlflow.get_tracking_uri()))
