"""The served model: an MLflow pyfunc that takes raw inputs (image bytes as base64, text) and
does its own feature extraction, so `mlflow models serve` needs no extra code."""

from __future__ import annotations

import base64
import binascii
from pathlib import Path
from typing import Any

import mlflow.pyfunc
import pandas as pd
import torch
from mlflow.exceptions import MlflowException
from mlflow.protos.databricks_pb2 import INVALID_PARAMETER_VALUE
from mmops.artifacts import load_torch
from mmops.data.media import MediaError, decode_image
from mmops.device import pick_device
from mmops.features.image import IMAGE_DIM, ImageEncoder, ImagePreset, encode_images
from mmops.features.text import TEXT_DIM, TextEncoder
from mmops.training.train import model_from_checkpoint, predict

MODALITY_COLUMNS = ("image", "text")
# The file MLflow runs to get the model (models-from-code), logged with the package beside it.
MODEL_CODE = str(Path(__file__).with_name("model_code.py"))


def _bad_input(message: str) -> MlflowException:
    # With INVALID_PARAMETER_VALUE the HTTP caller reads this message in the 400 response
    # (any other exception becomes a generic error).
    return MlflowException(message, error_code=INVALID_PARAMETER_VALUE)


def _present(value: Any) -> bool:
    return isinstance(value, str) and value.strip() != ""


class MultimodalClassifier(mlflow.pyfunc.PythonModel):
    """Image + text -> label; either modality may be missing from a record."""

    def load_context(self, context: Any) -> None:
        ckpt = load_torch(context.artifacts["checkpoint"])
        self.device = pick_device()
        self.classes = ckpt["classes"]
        self.image_size = int(ckpt["image_size"])
        self.max_image_pixels = int(ckpt["max_image_pixels"])
        self.model = model_from_checkpoint(ckpt).to(self.device)
        self.image_encoder = ImageEncoder(image_size=self.image_size)
        self.preset = ImagePreset(size=self.image_size)
        self.text_encoder = TextEncoder(device=self.device)

    def _decode_images(self, column: pd.Series) -> list[Any]:
        images = []
        for i, value in enumerate(column):
            if not _present(value):
                images.append(None)
                continue
            try:
                data = base64.b64decode(value, validate=True)
            except (binascii.Error, ValueError) as err:
                raise _bad_input(f"record {i}: 'image' is not base64: {err}") from err
            try:
                images.append(decode_image(data, self.max_image_pixels))
            except MediaError as err:
                raise _bad_input(f"record {i}: 'image': {err}") from err
        return images

    def predict(self, context: Any, model_input: pd.DataFrame, params: dict | None = None) -> pd.DataFrame:
        frame = pd.DataFrame(model_input)
        n = len(frame)
        for column in MODALITY_COLUMNS:
            if column not in frame.columns:
                frame[column] = None
        images = self._decode_images(frame["image"])
        has_image = torch.tensor([img is not None for img in images], dtype=torch.bool)
        has_text = torch.tensor([_present(t) for t in frame["text"]], dtype=torch.bool)
        empty = (~has_image & ~has_text).nonzero().flatten().tolist()
        if empty:
            raise _bad_input(f"record(s) {empty}: need an 'image' (base64) or a 'text', or both")
        image_features = torch.zeros(n, IMAGE_DIM)
        if has_image.any():
            image_features[has_image] = encode_images(
                [img for img in images if img is not None], self.image_encoder, self.preset,
                batch_size=64, device=self.device,
            )
        text_features = torch.zeros(n, TEXT_DIM)
        if has_text.any():
            texts = [t.strip() for t, ok in zip(frame["text"], has_text.tolist()) if ok]
            text_features[has_text] = self.text_encoder(texts, batch_size=64)
        log_probs = predict(
            self.model, {"image": image_features, "text": text_features}, self.device,
            present={"image": has_image, "text": has_text},
        )["fused"]
        confidence, index = log_probs.exp().max(dim=1)
        return pd.DataFrame({
            "label": [self.classes[i] for i in index.tolist()],
            "confidence": confidence.tolist(),
        })

