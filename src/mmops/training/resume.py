"""Per-epoch training checkpoints, so a killed run continues where it stopped.

After every epoch, training writes everything the next epoch depends on: the model, the
optimiser and scheduler, every random stream (data order, modality dropout, torch's own), the
curves so far and the best epoch yet. A resumed run therefore takes exactly the steps an
uninterrupted one would have taken, and ends with bit-identical weights on the same machine.
The file is written atomically (a kill mid-write leaves the previous epoch's) and loaded with
`weights_only=True` (nothing in it is unpickled code).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
from pathlib import Path
from typing import Any

import torch

from mmops import artifacts
from mmops.config import TrainParams

log = logging.getLogger(__name__)
FORMAT = 1


def fingerprint(params: TrainParams, tensors: list[torch.Tensor], extra: Any = None) -> str:
    """What a run's steps depend on: the train params, the training data's bytes and `extra`
    (anything else, as JSON: fine-tuning's raw inputs and augmentation). A checkpoint resumes
    only the run that has the same fingerprint."""
    digest = hashlib.sha256(json.dumps(dataclasses.asdict(params), sort_keys=True, default=str).encode())
    if extra is not None:
        digest.update(json.dumps(extra, sort_keys=True, default=str).encode())
    for tensor in tensors:
        digest.update(str((tensor.dtype, tuple(tensor.shape))).encode())
        digest.update(tensor.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def rng_state(generators: dict[str, torch.Generator]) -> dict[str, Any]:
    """The state of each named generator and of torch's global ones (CPU, and CUDA if used)."""
    state = {name: g.get_state() for name, g in generators.items()}
    state["torch"] = torch.get_rng_state()
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(generators: dict[str, torch.Generator], state: dict[str, Any]) -> None:
    """Put back what `rng_state` recorded."""
    for name, g in generators.items():
        g.set_state(state[name])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save(path: Path, state: dict[str, Any], fingerprint_: str) -> None:
    """Write one epoch's training state, atomically."""
    artifacts.save_torch(path, {"format": FORMAT, "fingerprint": fingerprint_, **state})


def load(path: Path, fingerprint_: str) -> dict[str, Any] | None:
    """The state saved at `path` by the run with this fingerprint; None (with a warning) when
    there is none to resume. A checkpoint of another run (other params or data) is an error:
    continuing it would silently mix two runs."""
    if not Path(path).is_file():
        log.warning("no checkpoint at %s to resume from: training starts at epoch 1", path)
        return None
    state = artifacts.load_torch(path)
    if state.get("format") != FORMAT or state.get("fingerprint") != fingerprint_:
        raise ValueError(f"{path} is the checkpoint of another training run (other train params or "
                         "training data): run without --resume to start afresh")
    log.info("resuming from %s after epoch %d", path, state["epoch"])
    return state
