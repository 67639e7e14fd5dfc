"""Audio as the seeds describe it: a clip sampled at one rate, mono, cut to a maximum length, then
a short-time Fourier transform, a log-mel spectrogram and its MFCCs (the cepstrum: a DCT of the
log-mel bands). The audio modality's encoders start from here.

Decoding is libsndfile's (`soundfile`: Ogg Vorbis, FLAC, WAV with no ffmpeg), resampling
scipy's polyphase filter, the transforms torch's `stft` with a mel filterbank built here (the
HTK mel scale), so nothing depends on torchaudio's builds matching torch's.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np
import torch


@dataclass(frozen=True)
class AudioSpec:
    """How a clip becomes frames: the rate it is resampled to, its maximum length, the STFT's
    window and hop (25 ms and 10 ms at 16 kHz), the mel bands and the MFCCs kept."""

    sample_rate: int = 16_000
    max_seconds: float = 5.0
    n_fft: int = 400
    hop: int = 160
    n_mels: int = 64
    n_mfcc: int = 20

    def __post_init__(self) -> None:
        if self.sample_rate <= 0 or self.max_seconds <= 0 or not 0 < self.hop <= self.n_fft:
            raise ValueError(f"audio: needs sample_rate > 0, max_seconds > 0 and 0 < hop <= n_fft, got {self}")
        if not 0 < self.n_mfcc <= self.n_mels:
            raise ValueError(f"audio: needs 0 < n_mfcc <= n_mels, got {self}")


def read_clip(source: Path | BinaryIO, spec: AudioSpec = AudioSpec()) -> np.ndarray:
    """The clip as float32 samples in [-1, 1] at `spec.sample_rate`, mono (the channels'
    mean), cut to `spec.max_seconds`. Raises `soundfile.LibsndfileError` (naming the reason)
    for a file libsndfile cannot decode."""
    import soundfile

    data, rate = soundfile.read(source, dtype="float32", always_2d=True)  # (frames, channels)
    return to_clip(data, rate, spec)


def to_clip(data: np.ndarray, rate: int, spec: AudioSpec = AudioSpec()) -> np.ndarray:
    """Decoded samples (frames, channels) at `rate` as `read_clip` returns them: mono, resampled
    to `spec.sample_rate`, cut to `spec.max_seconds`."""
    from scipy.signal import resample_poly

    wave = data.mean(axis=1)
    if rate != spec.sample_rate:
        g = math.gcd(int(rate), spec.sample_rate)
        wave = resample_poly(wave, spec.sample_rate // g, int(rate) // g).astype(np.float32)
    return np.ascontiguousarray(wave[: int(spec.max_seconds * spec.sample_rate)], dtype=np.float32)


def hz_to_mel(hz: np.ndarray | float) -> np.ndarray:
    return 2595.0 * np.log10(1.0 + np.asarray(hz, dtype=np.float64) / 700.0)


def mel_to_hz(mel: np.ndarray | float) -> np.ndarray:
    return 700.0 * (10.0 ** (np.asarray(mel, dtype=np.float64) / 2595.0) - 1.0)


def mel_filterbank(spec: AudioSpec = AudioSpec()) -> torch.Tensor:
    """(n_mels, n_fft // 2 + 1): triangular filters, evenly spaced on the mel scale from 0 Hz to
    the Nyquist frequency, each 1 at its centre (sampled at the STFT's bins)."""
    bins = np.linspace(0.0, spec.sample_rate / 2, spec.n_fft // 2 + 1)
    edges = mel_to_hz(np.linspace(0.0, hz_to_mel(spec.sample_rate / 2), spec.n_mels + 2))
    low, centre, high = edges[:-2, None], edges[1:-1, None], edges[2:, None]
    rising = (bins - low) / (centre - low)
    falling = (high - bins) / (high - centre)
    return torch.from_numpy(np.clip(np.minimum(rising, falling), 0.0, None).astype(np.float32))


def log_mel(wave: np.ndarray | torch.Tensor, spec: AudioSpec = AudioSpec()) -> torch.Tensor:
    """(n_mels, frames): the natural log of the mel-band power of a Hann-windowed STFT (floored
    at 1e-10, so silence is finite). A clip shorter than one window is zero-padded to it."""
    wave = torch.as_tensor(wave, dtype=torch.float32).flatten()
    if len(wave) < spec.n_fft:
        wave = torch.nn.functional.pad(wave, (0, spec.n_fft - len(wave)))
    stft = torch.stft(wave, n_fft=spec.n_fft, hop_length=spec.hop, window=torch.hann_window(spec.n_fft),
                      center=True, return_complex=True)
    power = stft.abs() ** 2  # (n_fft // 2 + 1, frames)
    return torch.log(mel_filterbank(spec) @ power + 1e-10)


def dct_matrix(n_out: int, n_in: int) -> torch.Tensor:
    """(n_out, n_in): the orthonormal DCT-II, the first `n_out` rows."""
    k, n = np.arange(n_out)[:, None], np.arange(n_in)[None, :]
    basis = np.cos(np.pi / n_in * (n + 0.5) * k) * np.sqrt(2.0 / n_in)
    basis[0] /= np.sqrt(2.0)
    return torch.from_numpy(basis.astype(np.float32))


def mfcc(log_mels: torch.Tensor, n_mfcc: int = AudioSpec.n_mfcc) -> torch.Tensor:
    """(n_mfcc, frames): the cepstral coefficients of a log-mel spectrogram (n_mels, frames)."""
    return dct_matrix(n_mfcc, log_mels.shape[0]) @ log_mels


def mfcc_statistics(wave: np.ndarray | torch.Tensor, spec: AudioSpec = AudioSpec()) -> torch.Tensor:
    """(2 * n_mfcc,): each MFCC's mean and standard deviation over the clip's frames: a fixed-size
    summary of a clip of any length (the frozen baseline the seeds' CNN is measured against)."""
    coefficients = mfcc(log_mel(wave, spec), spec.n_mfcc)
    return torch.cat([coefficients.mean(dim=1), coefficients.std(dim=1, correction=0)])


def fingerprint(wave: np.ndarray | torch.Tensor, spec: AudioSpec = AudioSpec(), bits: int = 16) -> str:
    """A perceptual hash of a clip, `bits` x `bits` bits as hex (256 by default, like the image
    modality's): the image modality's DCT hash applied to the clip's log-mel spectrogram. The
    sound is trimmed of the quiet before and after it (frames 40 dB below its loudest), bands 60 dB
    below the loudest cell are set to that floor, the spectrogram is pooled to a 2 bits x 2 bits
    grid of bands and time, and each of its lowest `bits` x `bits` 2-D DCT coefficients gives a
    bit: above their median or not. A gain moves only the constant term; trimming and pooling
    ignore the rate, the silence around the sound and a shift of the frames, so a re-encode of
    one recording stays within a few bits while two recordings of one phrase differ in dozens."""
    mels = log_mel(wave, spec)  # (n_mels, frames)
    mels = mels.clamp_min(float(mels.max()) - math.log(1e6))  # 60 dB: no codec noise in empty bands
    loud = mels.logsumexp(dim=0)
    kept = torch.nonzero(loud >= loud.max() - math.log(1e4)).flatten()  # 40 dB of power
    mels = mels[:, int(kept[0]): int(kept[-1]) + 1]
    grid = torch.nn.functional.adaptive_avg_pool2d(mels[None, None], (2 * bits, 2 * bits))[0, 0]
    basis = dct_matrix(bits, 2 * bits)
    low = basis @ grid @ basis.T  # (bits, bits): the slowest changes across bands and time
    packed = np.packbits((low > low.flatten().median()).flatten().numpy().astype(np.uint8))
    return packed.tobytes().hex()
