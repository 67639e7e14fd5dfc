"""The audio modality on real encoded files (written here with libsndfile): what it refuses and
why, the facts and measures it reports, its augmentations, its stored views, its features and
what it accepts in a request."""

import base64

import numpy as np
import pytest
import soundfile
import torch

from mmops.config import ModalityParams
from mmops.modalities import REGISTRY
from mmops.modalities.audio import AudioModality
from mmops.modalities.media import MediaError

AUDIO = AudioModality(ModalityParams(name="audio", column="audio", encoder="mfcc-stats", required=False,
                                     options={"max_seconds": 3.0, "max_file_seconds": 4.0}))


def _speechlike(seconds: float = 1.0, rate: int = 22_050, seed: int = 0) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    rng = np.random.default_rng(seed)
    tones = sum(np.sin(2 * np.pi * f * t) for f in rng.uniform(150, 2500, size=4))
    return (0.1 * tones * (0.5 + 0.5 * np.sin(2 * np.pi * 3 * t))).astype(np.float32)


def _write(tmp_path, name: str, data: np.ndarray, rate: int = 22_050, **kwargs) -> str:
    soundfile.write(tmp_path / name, data, rate, **kwargs)
    return name


def test_audio_is_a_registered_optional_media_modality():
    assert REGISTRY["audio"] is AudioModality
    assert AUDIO.media and AUDIO.may_skip("") and AUDIO.feature_dim == 40


def test_a_good_ogg_vorbis_clip_passes_and_its_facts_are_recorded(tmp_path):
    name = _write(tmp_path, "ok.ogg", _speechlike(1.5), format="OGG", subtype="VORBIS")
    assert AUDIO.problem(name, tmp_path) is None
    facts = AUDIO.facts(name, tmp_path)
    assert set(facts) == set(AudioModality.fact_names)
    assert facts["seconds"] == pytest.approx(1.5, abs=0.01) and facts["sample_rate"] == 22_050
    assert facts["channels"] == 1 and -40 < facts["loudness_dbfs"] < -10 and facts["bytes"] > 0
    assert len(facts["fingerprint"]) == 64  # 256 bits: the split groups re-encoded clips by it


def test_clips_group_as_near_duplicates_within_their_own_distance_not_the_images():
    assert AudioModality.near_duplicate_fact == "fingerprint"
    assert AUDIO.near_duplicate_distance(default=15) == 20
    own = AudioModality(ModalityParams(name="audio", column="audio", encoder="mfcc-stats",
                                       options={"near_duplicate_distance": -1}))
    assert own.near_duplicate_distance(default=15) == -1


@pytest.mark.parametrize(("write", "reason"), [
    (lambda p: p.write_bytes(b"OggS this is not vorbis"), "unreadable audio"),
    (lambda p: soundfile.write(p, np.zeros((0, 1), np.float32), 16_000, format="WAV"), "empty audio"),
    (lambda p: soundfile.write(p, _speechlike(5.0), 22_050, format="WAV"), "audio too long: 5.0 s"),
    (lambda p: soundfile.write(p, np.zeros(16_000, np.float32), 16_000, format="WAV"), "silent audio"),
    (lambda p: soundfile.write(p, np.stack([_speechlike()] * 3, 1), 22_050, format="WAV"),
     "unsupported audio: 3 channels"),
])
def test_an_unusable_clip_is_refused_with_its_reason(tmp_path, write, reason):
    write(tmp_path / "bad.wav")
    assert AUDIO.problem("bad.wav", tmp_path).startswith(reason)


def test_a_missing_file_or_a_path_out_of_the_data_root_is_refused(tmp_path):
    assert AUDIO.check("nowhere.ogg", tmp_path) == "audio file not found"
    assert AUDIO.check("../x.ogg", tmp_path).startswith("bad audio path")


def test_a_loaded_clip_is_mono_at_the_options_rate_and_cut_to_max_seconds(tmp_path):
    name = _write(tmp_path, "stereo.wav", np.stack([_speechlike(3.0)] * 2, 1))
    short = AudioModality(ModalityParams(name="audio", column="audio", encoder="mfcc-stats",
                                         options={"max_seconds": 2.0}))
    wave = short.load(name, tmp_path)
    assert wave.ndim == 1 and len(wave) == 32_000
    assert short.measures(wave)["seconds"] == 2.0


def test_augmentation_is_seeded_keeps_the_length_and_strength_zero_keeps_the_clip():
    wave = _speechlike(1.0, rate=16_000)
    view = AUDIO.augment(wave, 1.0, seed=3)
    assert view.shape == wave.shape and not np.allclose(view, wave)
    assert np.array_equal(view, AUDIO.augment(wave, 1.0, seed=3))
    assert not np.array_equal(view, AUDIO.augment(wave, 1.0, seed=4))
    assert AUDIO.augment(wave, 0.0, seed=3) is wave


def test_a_stored_view_is_a_wav_that_reads_back_and_has_the_same_bytes_each_time(tmp_path):
    view = AUDIO.augment(_speechlike(1.0, rate=16_000), 0.5, seed=0)
    first = AUDIO.store(view, tmp_path / "a", "views/x")
    AUDIO.store(view, tmp_path / "b", "views/x")
    assert first == "views/x.wav"
    assert (tmp_path / "a" / first).read_bytes() == (tmp_path / "b" / first).read_bytes()
    assert AUDIO.problem(first, tmp_path / "a") is None


def test_features_are_a_fixed_size_vector_per_clip_with_a_sound_norm(tmp_path):
    names = [_write(tmp_path, f"c{i}.wav", _speechlike(0.5 + i, seed=i)) for i in range(3)]
    encode = AUDIO.encoder(torch.device("cpu"), torch.float32)
    features = encode(names, batch_size=2, load=lambda n: AUDIO.load(n, tmp_path))
    assert features.shape == (3, 40) and features.dtype == torch.float32
    low, high = AudioModality.feature_norm
    assert bool(((features.norm(dim=1) > low) & (features.norm(dim=1) < high)).all())


def test_a_request_carries_the_clip_as_base64_and_a_bad_one_is_refused_with_a_reason(tmp_path):
    name = _write(tmp_path, "ok.ogg", _speechlike(1.0), format="OGG", subtype="VORBIS")
    wave = AUDIO.from_request(AUDIO.to_request(name, tmp_path))
    assert np.allclose(wave, AUDIO.load(name, tmp_path))
    assert AUDIO.from_request(None) is None and AUDIO.from_request("") is None
    with pytest.raises(ValueError, match="not base64"):
        AUDIO.from_request("%%%")
    with pytest.raises(MediaError, match="unreadable audio"):
        AUDIO.from_request(base64.b64encode(b"RIFF nonsense").decode())
    with pytest.raises(ValueError, match="must be a base64 string"):
        AUDIO.from_request(3)
