"""Audio features from real encoded files (written here with libsndfile): a clip is read as mono
at one rate and cut to its maximum length; the log-mel spectrogram puts a tone's energy in the
band of its frequency; MFCCs are an orthonormal DCT of it; a clip of any length summarises to
one fixed-size vector."""

import numpy as np
import pytest
import soundfile
import torch

from mmops.modalities.audio_features import (AudioSpec, dct_matrix, fingerprint, hz_to_mel, log_mel, mel_filterbank,
                                             mel_to_hz, mfcc, mfcc_statistics, read_clip)

SPEC = AudioSpec()


def _tone(hz: float, seconds: float, rate: int, amplitude: float = 0.5) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    return (amplitude * np.sin(2 * np.pi * hz * t)).astype(np.float32)


def test_a_stereo_ogg_vorbis_clip_at_another_rate_is_read_as_mono_at_the_spec_rate(tmp_path):
    left, right = _tone(440, 1.0, 44_100), _tone(440, 1.0, 44_100, amplitude=0.1)
    soundfile.write(tmp_path / "clip.ogg", np.stack([left, right], axis=1), 44_100, format="OGG", subtype="VORBIS")
    wave = read_clip(tmp_path / "clip.ogg")
    assert wave.dtype == np.float32 and wave.ndim == 1
    assert abs(len(wave) - SPEC.sample_rate) <= 2  # one second at 16 kHz
    assert 0.25 < float(np.abs(wave).max()) < 0.35  # the mean of the channels: (0.5 + 0.1) / 2


def test_a_clip_longer_than_the_maximum_is_cut_to_it(tmp_path):
    soundfile.write(tmp_path / "long.wav", _tone(440, 3.0, 16_000), 16_000)
    assert len(read_clip(tmp_path / "long.wav", AudioSpec(max_seconds=1.5))) == 24_000


def test_a_file_that_is_not_audio_is_refused_by_libsndfile(tmp_path):
    (tmp_path / "not.ogg").write_bytes(b"OggS but not really")
    with pytest.raises(soundfile.LibsndfileError):
        read_clip(tmp_path / "not.ogg")


def test_the_mel_scale_round_trips_and_no_filter_is_empty():
    assert mel_to_hz(hz_to_mel(1000.0)) == pytest.approx(1000.0)
    bank = mel_filterbank(SPEC)
    assert bank.shape == (SPEC.n_mels, SPEC.n_fft // 2 + 1)
    assert float(bank.min()) == 0.0 and float(bank.max()) <= 1.0
    assert bool((bank.sum(dim=1) > 0).all())  # even the narrow low filters catch a frequency bin


@pytest.mark.parametrize("hz", [300.0, 1000.0, 4000.0])
def test_a_tones_energy_lands_in_the_mel_band_of_its_frequency(hz):
    bands = log_mel(_tone(hz, 0.5, SPEC.sample_rate)).mean(dim=1)
    centres = mel_to_hz(np.linspace(0, hz_to_mel(SPEC.sample_rate / 2), SPEC.n_mels + 2))[1:-1]
    assert abs(int(bands.argmax()) - int(np.abs(centres - hz).argmin())) <= 1


def test_silence_and_a_clip_shorter_than_one_window_give_finite_features():
    assert bool(torch.isfinite(log_mel(np.zeros(16_000, dtype=np.float32))).all())
    assert bool(torch.isfinite(mfcc_statistics(np.zeros(100, dtype=np.float32))).all())


def test_mfccs_are_an_orthonormal_dct_so_a_flat_spectrum_has_only_the_first_coefficient():
    basis = dct_matrix(SPEC.n_mels, SPEC.n_mels)
    assert torch.allclose(basis @ basis.T, torch.eye(SPEC.n_mels), atol=1e-5)
    flat = torch.full((SPEC.n_mels, 7), 2.0)
    coefficients = mfcc(flat, SPEC.n_mfcc)
    assert coefficients.shape == (SPEC.n_mfcc, 7)
    assert coefficients[0, 0] == pytest.approx(2.0 * SPEC.n_mels ** 0.5, rel=1e-5)
    assert float(coefficients[1:].abs().max()) < 1e-4


def test_clips_of_any_length_summarise_to_one_vector_that_tells_tones_apart():
    low, high = mfcc_statistics(_tone(300, 0.4, 16_000)), mfcc_statistics(_tone(3000, 1.7, 16_000))
    assert low.shape == high.shape == (2 * SPEC.n_mfcc,)
    assert float((low - high).norm()) > 1.0


def test_an_impossible_spec_is_refused_naming_it():
    with pytest.raises(ValueError, match="n_mfcc <= n_mels"):
        AudioSpec(n_mels=10, n_mfcc=20)


def _bits_apart(a: str, b: str) -> int:
    return int(np.bitwise_count(np.frombuffer(bytes.fromhex(a), np.uint8) ^ np.frombuffer(bytes.fromhex(b), np.uint8)).sum())


def _word(seed: int, rate: int = 44_100) -> np.ndarray:
    """A second of noise through three bands, one after the other, each faded in and out: a
    broadband "word" like speech, a different one per seed."""
    from scipy.signal import butter, lfilter

    rng = np.random.default_rng(seed)
    noise, out = rng.normal(size=rate), np.zeros(rate)
    for k, (low, high) in enumerate(rng.uniform([200, 1500], [1500, 6000], (3, 2))):
        envelope = np.zeros(rate)
        envelope[k * rate // 3: k * rate // 3 + rate // 3] = np.hanning(rate // 3)
        out += lfilter(*butter(2, [low / (rate / 2), high / (rate / 2)], btype="band"), noise) * envelope
    return (0.3 * out / np.abs(out).max()).astype(np.float32)


def test_a_fingerprint_is_256_bits_and_the_same_for_the_same_clip():
    assert len(fingerprint(_word(0))) == 64 and fingerprint(_word(0)) == fingerprint(_word(0))


def test_a_re_encoded_clip_quieter_at_another_rate_with_silence_around_it_keeps_its_fingerprint(tmp_path):
    from scipy.signal import resample_poly

    first = _word(0)
    soundfile.write(tmp_path / "first.wav", first, 44_100)
    half = (0.5 * resample_poly(first, 1, 2)).astype(np.float32)
    padded = np.concatenate([np.zeros(9000, np.float32), half, np.zeros(5000, np.float32)])
    soundfile.write(tmp_path / "again.ogg", padded, 22_050, format="OGG", subtype="VORBIS")
    apart = _bits_apart(fingerprint(read_clip(tmp_path / "first.wav")), fingerprint(read_clip(tmp_path / "again.ogg")))
    assert apart <= 20  # the audio modality's default near-duplicate distance


def test_different_clips_have_fingerprints_far_apart():
    prints = [fingerprint(_word(seed)) for seed in range(6)]
    assert min(_bits_apart(a, b) for i, a in enumerate(prints) for b in prints[i + 1:]) > 40
