"""The served model: an MLflow pyfunc that takes raw inputs (one column per modality: media
as base64, text as is) and makes its own features, exactly as the pipeline made them, so
`mlflow models serve` needs no extra code."""

from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import Any

import mlflow.pyfunc
import pandas as pd
import torch
from mlflow.exceptions import MlflowException
from mlflow.protos.databricks_pb2 import INTERNAL_ERROR, INVALID_PARAMETER_VALUE

from mmops.artifacts import load_torch
from mmops.config import ModalityParams, ServeParams
from mmops.device import feature_dtype, pick_device
from mmops.features.cache import check_encoders
from mmops.modalities import build_modalities
from mmops.modalities.base import present
from mmops.serving.explain import answers, explain
from mmops.models.checkpoint import model_from_checkpoint

# The file MLflow runs to get the model (models-from-code), logged with the package beside it.
MODEL_CODE = str(Path(__file__).with_name("model_code.py"))

_log = logging.getLogger(__name__)
# Intra-op threads pay off from about this many records per thread. Below it they only wait on
# each other: measured on 2 cores in the server's worker thread, one record took 33 ms with one
# thread and 55 ms with two; 8 records took the same either way; 32 took 770 ms vs 543 ms.
RECORDS_PER_THREAD = 8
# torch's thread count is one setting for the whole process, while the server runs each request's
# `predict` in a thread of its own: one request at a time sets it and computes under this lock,
# so no request computes with (or restores over) another's setting. Computing is CPU- (or GPU-)
# bound either way: two requests at once would only share the same cores.
_SCORING = threading.Lock()


def encoder_device(made_on: str | None, here: torch.device) -> torch.device:
    """Where serving runs a modality's encoder: on the kind of device its training features were
    made on, so the numbers match (CPU-made features are served on the CPU even on a GPU host).
    Features from a device kind this host lacks get this host's device, which the identity check
    then refuses, naming both."""
    if made_on == here.type:
        return here
    return torch.device("cpu") if made_on == "cpu" else here


def _bad_input(message: str) -> MlflowException:
    # With INVALID_PARAMETER_VALUE the HTTP caller reads this message in the 400 response
    # (any other exception becomes a generic error).
    return MlflowException(message, error_code=INVALID_PARAMETER_VALUE)


class MultimodalClassifier(mlflow.pyfunc.PythonModel):
    """Raw modalities -> label, class probabilities and an explanation by modality; any
    modality may be missing from a record, not all of them."""

    def load_context(self, context: Any) -> None:
        ckpt = load_torch(context.artifacts["checkpoint"])
        # the limits `register` stored with the model (params.yaml `serve:`)
        self.limits = ServeParams(**(getattr(context, "model_config", None) or {}))
        self.device = pick_device()
        self.threads = torch.get_num_threads()
        self.classes = list(ckpt["classes"])
        self.modalities = build_modalities(ModalityParams(**spec) for spec in ckpt["modalities"])
        self.model = model_from_checkpoint(ckpt).to(self.device)
        # Encode the way the training features were made: same encoders, same precision (bf16
        # autocast works on CPU too), same kind of device, else refuse to load: a CUDA-made
        # model on a CPU-only host is refused, not served with numbers it never saw. A fine-tuned
        # encoder comes from the model itself, its weights checked against the hash it records.
        self.encoders = {}
        tuned = ckpt.get("encoder_weights", {})
        for m in self.modalities:
            made = ckpt["encoders"][m.name]
            device = encoder_device(made.get("device"), self.device)
            dtype = feature_dtype(made["dtype"], device)
            check_encoders({m.name: made}, {m.name: m.identity(dtype, device, tuned.get(m.name))},
                           made_by="the model's training features", expected_by="this serving environment",
                           remedy="serve it where its features were made (a CUDA host for CUDA features), "
                                  "or retrain with `mmops stage featurize --device cpu` for CPU serving")
            self.encoders[m.name] = m.encoder(device, dtype, tuned.get(m.name))

    def _check(self, frame: pd.DataFrame) -> None:
        """Refuse a request as a whole before any decoding: no known column, no records, too
        many records, an oversized value, a record with no modality."""
        names = [m.name for m in self.modalities]
        wanted = " or ".join(f"'{n}'" for n in names)
        if not set(names) & set(frame.columns):
            # MLflow drops columns the signature does not name before the model sees them
            raise _bad_input(f"the request has none of the model's columns: {wanted} (other columns are ignored)")
        if len(frame) == 0:
            raise _bad_input("the request has no records")
        if len(frame) > self.limits.max_records:
            raise _bad_input(f"the request has {len(frame)} records; at most {self.limits.max_records} "
                             "per request: send it in parts")
        empty = []
        for i, row in enumerate(frame.reindex(columns=names).itertuples(index=False)):
            for name, value in zip(names, row):
                size = len(value.encode()) if isinstance(value, str) else 0
                if size > self.limits.max_value_bytes:
                    raise _bad_input(f"record {i}: '{name}': {size} bytes exceeds the limit of "
                                     f"{self.limits.max_value_bytes}")
            if not any(map(present, row)):
                empty.append(i)
        if empty:
            raise _bad_input(f"record(s) {empty}: need at least one of {wanted}")

    def _encode(self, chunk: pd.DataFrame, first: int) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
        features, masks = {}, {}
        for m in self.modalities:
            decoded = []
            for i, value in enumerate(chunk[m.name], start=first):
                try:
                    decoded.append(m.from_request(value))
                except ValueError as err:
                    raise _bad_input(f"record {i}: '{m.name}': {err}") from err
            mask = torch.tensor([d is not None for d in decoded], dtype=torch.bool)
            out = torch.zeros(len(chunk), m.feature_dim)
            if mask.any():
                kept = [d for d in decoded if d is not None]
                out[mask] = self.encoders[m.name](kept, batch_size=len(kept))
            features[m.name], masks[m.name] = out, mask
        return features, masks

    def features(self, frame: pd.DataFrame) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
        """Features and presence masks of the records in `frame` (one column per modality),
        decoded and encoded `serve.chunk_size` records at a time so memory stays flat."""
        self._check(frame)
        return self._features(frame)

    def _features(self, frame: pd.DataFrame) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
        frame = frame.reindex(columns=[m.name for m in self.modalities])  # a column left out: all absent
        step = self.limits.chunk_size
        parts = [self._encode(frame.iloc[start:start + step], start) for start in range(0, len(frame), step)]
        features = {m.name: torch.cat([f[m.name] for f, _ in parts]) for m in self.modalities}
        masks = {m.name: torch.cat([mask[m.name] for _, mask in parts]) for m in self.modalities}
        return features, masks

    def predict(self, context: Any, model_input: pd.DataFrame, params: dict | None = None) -> pd.DataFrame:
        try:
            frame = pd.DataFrame(model_input)
            self._check(frame)  # a bad request is answered at once, not after the queue
            with _SCORING:
                torch.set_num_threads(max(1, min(self.threads, len(frame) // RECORDS_PER_THREAD)))
                try:
                    features, masks = self._features(frame)
                    return answers(explain(self.model, features, masks, self.device), self.classes)
                finally:
                    torch.set_num_threads(self.threads)
        except MlflowException:
            raise
        except Exception as err:
            # No answer ever carries a stack trace (MLflow attaches one to any other error):
            # the details go to the server's log, the caller gets a plain 500.
            _log.exception("scoring failed")
            raise MlflowException("internal error while scoring the request; the server log has the details",
                                  error_code=INTERNAL_ERROR) from err
