"""The served model: an MLflow pyfunc that takes raw inputs (one column per modality: media
as base64, text as is) and makes its own features, exactly as the pipeline made them, so
`mlflow models serve` needs no extra code."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import mlflow.pyfunc
import pandas as pd
import torch
from mlflow.exceptions import MlflowException
from mlflow.protos.databricks_pb2 import INVALID_PARAMETER_VALUE

from mmops.artifacts import load_torch
from mmops.config import ModalityParams
from mmops.device import feature_dtype, pick_device
from mmops.features.cache import check_encoders
from mmops.models.fusion import FUSED
from mmops.modalities import build_modalities
from mmops.training.train import model_from_checkpoint, predict

# The file MLflow runs to get the model (models-from-code), logged with the package beside it.
MODEL_CODE = str(Path(__file__).with_name("model_code.py"))
BATCH = 64


def _bad_input(message: str) -> MlflowException:
    # With INVALID_PARAMETER_VALUE the HTTP caller reads this message in the 400 response
    # (any other exception becomes a generic error).
    return MlflowException(message, error_code=INVALID_PARAMETER_VALUE)


class MultimodalClassifier(mlflow.pyfunc.PythonModel):
    """Raw modalities -> label; any modality may be missing from a record, not all of them."""

    def load_context(self, context: Any) -> None:
        ckpt = load_torch(context.artifacts["checkpoint"])
        self.device = pick_device()
        self.classes = list(ckpt["classes"])
        self.modalities = build_modalities(ModalityParams(**spec) for spec in ckpt["modalities"])
        self.model = model_from_checkpoint(ckpt).to(self.device)
        # Encode the way the training features were made: same encoders, same precision
        # (bf16 autocast works on CPU too), else refuse to load.
        self.encoders = {}
        for m in self.modalities:
            dtype = feature_dtype(ckpt["encoders"][m.name]["dtype"], self.device)
            self.encoders[m.name] = m.encoder(self.device, dtype)
            check_encoders({m.name: ckpt["encoders"][m.name]}, {m.name: m.identity(dtype)},
                           made_by="the model's training features", expected_by="this serving environment")

    def features(self, frame: pd.DataFrame) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
        """Features and presence masks of the records in `frame` (one column per modality)."""
        n = len(frame)
        if n == 0:
            raise _bad_input("the request has no records")
        features, present = {}, {}
        for m in self.modalities:
            values = frame[m.name] if m.name in frame.columns else [None] * n
            decoded = []
            for i, value in enumerate(values):
                try:
                    decoded.append(m.from_request(value))
                except ValueError as err:
                    raise _bad_input(f"record {i}: '{m.name}': {err}") from err
            mask = torch.tensor([d is not None for d in decoded], dtype=torch.bool)
            out = torch.zeros(n, m.feature_dim)
            if mask.any():
                out[mask] = self.encoders[m.name]([d for d in decoded if d is not None], batch_size=BATCH)
            features[m.name], present[m.name] = out, mask
        empty = (~torch.stack(list(present.values())).any(0)).nonzero().flatten().tolist()
        if empty:
            wanted = " or ".join(f"'{m.name}'" for m in self.modalities)
            raise _bad_input(f"record(s) {empty}: need at least one of {wanted}")
        return features, present

    def predict(self, context: Any, model_input: pd.DataFrame, params: dict | None = None) -> pd.DataFrame:
        features, present = self.features(pd.DataFrame(model_input))
        log_probs = predict(self.model, features, self.device, present)[FUSED]
        confidence, index = log_probs.exp().max(dim=1)
        return pd.DataFrame({
            "label": [self.classes[i] for i in index.tolist()],
            "confidence": confidence.tolist(),
        })
