"""Audio: a path in the manifest (Ogg Vorbis, FLAC or WAV), base64 bytes in a request, and as
features either the frozen baseline, each clip's MFCCs' mean and standard deviation
(`mfcc-stats`, `audio_features`), or Whisper base's speech encoder (`whisper-base`, `whisper`:
an optional extra)."""

from __future__ import annotations

import io
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mmops.config import ModalityParams
from mmops.modalities.audio_features import AudioSpec, fingerprint, mfcc_statistics, to_clip
from mmops.modalities.base import EncoderSpec, MediaModality, Weights
from mmops.modalities.media import MediaError, resolve_media
from mmops.modalities.whisper import PACKAGES as WHISPER_PACKAGES
from mmops.modalities.whisper import SAMPLE_RATE as WHISPER_RATE
from mmops.modalities.whisper import WIDTH as WHISPER_WIDTH
from mmops.modalities.whisper import WhisperFeaturizer

FORMATS = ("OGG", "FLAC", "WAV")


@dataclass(frozen=True)
class AudioOptions:
    sample_rate: int = 16_000  # every clip is resampled to this rate
    max_seconds: float = 5.0  # the part of a clip the encoder hears
    max_file_seconds: float = 30.0  # longer files are refused (in the manifest and in requests)
    silence_dbfs: float = -60.0  # a clip quieter than this (RMS, dB full scale) is refused as silent
    max_channels: int = 2
    # fingerprints (256 bits) at most this far apart are one recording, re-encoded: on the Tux Paint
    # clips the one re-encoded pair is 8 bits apart, distinct recordings of one phrase 30 or more
    near_duplicate_distance: int = 20

    def __post_init__(self) -> None:
        if self.sample_rate < 4000 or not 0 < self.max_seconds <= self.max_file_seconds or self.max_channels < 1:
            raise ValueError("params.yaml: modality 'audio' needs sample_rate >= 4000, "
                             "0 < max_seconds <= max_file_seconds and max_channels >= 1")

    @property
    def spec(self) -> AudioSpec:
        return AudioSpec(sample_rate=self.sample_rate, max_seconds=self.max_seconds)


def decode_audio(source: Path | bytes, options: AudioOptions) -> tuple[np.ndarray, dict[str, float]]:
    """The clip as the encoder hears it (mono, resampled, cut) and its facts: duration (s),
    sample rate and channels as recorded, loudness (RMS over the whole clip, dBFS). Refuses, with
    a `MediaError` naming the problem, what libsndfile cannot decode, another container, too many
    channels, an empty, over-long or silent clip."""
    import soundfile

    handle = io.BytesIO(source) if isinstance(source, bytes) else source
    try:
        info = soundfile.info(handle)
        if isinstance(handle, io.BytesIO):
            handle.seek(0)
        if info.format not in FORMATS:
            raise MediaError(f"unsupported audio: {info.format} (accepted: {', '.join(FORMATS)})")
        if info.channels > options.max_channels:
            raise MediaError(f"unsupported audio: {info.channels} channels (at most {options.max_channels})")
        if info.frames == 0:
            raise MediaError("empty audio: no samples")
        if info.frames / info.samplerate > options.max_file_seconds:
            raise MediaError(f"audio too long: {info.frames / info.samplerate:.1f} s (at most "
                             f"{options.max_file_seconds:g} s)")
        whole, rate = soundfile.read(handle, dtype="float32", always_2d=True)
    except soundfile.LibsndfileError as err:
        raise MediaError(f"unreadable audio: {err.error_string}") from err
    except (RuntimeError, TypeError) as err:  # soundfile's own refusals of what is not audio at all
        raise MediaError(f"unreadable audio: {err}") from err
    loudness = float(20 * np.log10(np.sqrt(np.mean(whole.mean(axis=1) ** 2)) + 1e-12))
    if loudness < options.silence_dbfs:
        raise MediaError(f"silent audio: {loudness:.0f} dBFS (below {options.silence_dbfs:g})")
    wave = to_clip(whole, rate, options.spec)  # from the samples already decoded: one decode a clip
    return wave, {"seconds": info.frames / info.samplerate, "sample_rate": float(info.samplerate),
                  "channels": float(info.channels), "loudness_dbfs": loudness}


class MFCCFeaturizer:
    """The frozen baseline: a clip's 20 MFCCs' mean and standard deviation (40 numbers), on the
    CPU in float32 whatever the device (it is a few milliseconds a clip)."""

    def __init__(self, spec: AudioSpec) -> None:
        self.spec = spec

    def __call__(self, sources: Sequence[Any], *, batch_size: int,
                 load: Callable[[Any], np.ndarray] | None = None) -> torch.Tensor:
        waves = [load(s) if load is not None else s for s in sources]
        if not waves:
            return torch.zeros(0, 2 * self.spec.n_mfcc)
        return torch.stack([mfcc_statistics(w, self.spec) for w in waves]).float()


# encoder -> (feature width, the L2 norms a sound feature vector has)
FEATURES = {
    # 26-58 on the Tux Paint clips; digital silence gives 184 (every band at the log floor)
    "mfcc-stats": (2 * AudioSpec.n_mfcc, (5.0, 150.0)),
    # 29-33 on the Tux Paint clips (the encoder's layer norm keeps them in a narrow band)
    "whisper-base": (2 * WHISPER_WIDTH, (5.0, 100.0)),
}


class AudioModality(MediaModality):
    name = "audio"
    feature_dim, feature_norm = FEATURES["mfcc-stats"]  # an instance with another encoder sets its own
    near_duplicate_fact = "fingerprint"
    fact_names = ("seconds", "sample_rate", "channels", "loudness_dbfs", "bytes", "fingerprint")
    Options = AudioOptions
    # the decoder (libsndfile), the resampler and the transforms; Whisper's runtime and weights
    encoders = {"mfcc-stats": EncoderSpec(("soundfile", "scipy", "torch")),
                "whisper-base": EncoderSpec(("soundfile", "scipy", "torch", *WHISPER_PACKAGES))}

    def __init__(self, spec: ModalityParams) -> None:
        super().__init__(spec)
        self.feature_dim, self.feature_norm = FEATURES[spec.encoder]
        if spec.encoder == "whisper-base" and self.options.sample_rate != WHISPER_RATE:
            raise ValueError(f"params.yaml: modality 'audio' with encoder whisper-base needs sample_rate "
                             f"{WHISPER_RATE} (Whisper's), got {self.options.sample_rate}")

    def facts(self, value: str, root: Path) -> dict[str, Any]:
        path = resolve_media(root, value)
        wave, facts = decode_audio(path, self.options)
        # the clip as heard, so a re-encode (another rate, codec or level) lands within a few bits
        return facts | {"bytes": path.stat().st_size, "fingerprint": fingerprint(wave, self.options.spec)}

    def expectations(self) -> list[Any]:
        import great_expectations as gx

        e, o = gx.expectations, self.options
        return [e.ExpectColumnValuesToBeBetween(column="audio_seconds", min_value=0, max_value=o.max_file_seconds,
                                                strict_min=True),
                e.ExpectColumnValuesToBeBetween(column="audio_channels", min_value=1, max_value=o.max_channels),
                e.ExpectColumnValuesToBeBetween(column="audio_loudness_dbfs", min_value=o.silence_dbfs, max_value=0.5),
                e.ExpectColumnValuesToBeBetween(column="audio_bytes", min_value=1),
                e.ExpectColumnValuesToMatchRegex(column="audio_fingerprint", regex=r"^[0-9a-f]{64}$")]

    def measures(self, loaded: np.ndarray) -> dict[str, float]:
        """Length (s, as heard: at most `max_seconds`) and loudness (RMS, dBFS) of the clip."""
        rms = float(np.sqrt(np.mean(loaded.astype(np.float64) ** 2))) if len(loaded) else 0.0
        return {"seconds": len(loaded) / self.options.sample_rate, "loudness": 20 * np.log10(rms + 1e-12)}

    def near_duplicate_distance(self, default: int) -> int:
        return self.options.near_duplicate_distance

    def load(self, value: str, root: Path) -> np.ndarray:
        return decode_audio(resolve_media(root, value), self.options)[0]

    def augment(self, loaded: np.ndarray, strength: float, seed: int) -> np.ndarray:
        """A shift in time (up to 0.2 s, wrapping), a gain (up to ±6 dB) and background noise (down
        to 20 dB below the clip), each scaled by `strength`."""
        if strength <= 0:
            return loaded
        rng = np.random.default_rng(seed)
        shift = int(rng.uniform(-0.2, 0.2) * strength * self.options.sample_rate)
        view = np.roll(loaded, shift) * 10 ** (rng.uniform(-6, 6) * strength / 20)
        rms = float(np.sqrt(np.mean(view ** 2))) if len(view) else 0.0
        noise = rng.normal(0.0, rms * 10 ** (-(40 - 20 * strength) / 20), size=len(view))
        return np.clip(view + noise, -1.0, 1.0).astype(np.float32)

    def store(self, view: np.ndarray, folder: Path, stem: str) -> str:
        import soundfile

        path = Path(folder) / f"{stem}.wav"
        path.parent.mkdir(parents=True, exist_ok=True)
        soundfile.write(path, view, self.options.sample_rate, format="WAV", subtype="PCM_16")
        return path.relative_to(folder).as_posix()

    def encoder(self, device: torch.device, dtype: torch.dtype,
                weights: Weights | None = None) -> MFCCFeaturizer | WhisperFeaturizer:
        if self.spec.encoder == "whisper-base":
            return WhisperFeaturizer(self.options.max_seconds, device)
        return MFCCFeaturizer(self.options.spec)

    def input_size(self) -> int:
        return int(self.options.sample_rate * self.options.max_seconds)

    def from_request(self, value: Any) -> np.ndarray | None:
        data = self.request_bytes(value)
        return None if data is None else decode_audio(data, self.options)[0]  # MediaError is a ValueError
