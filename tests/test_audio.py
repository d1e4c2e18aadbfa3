"""The audio front end (log-mel, padding, SpecAugment) and the AST-style encoder."""

from __future__ import annotations

import flax.linen as nn
import jax
import numpy as np
import pytest
import scipy.signal

from mmjax.data.audio import LOG_FLOOR, LogMel, pad_frames, spec_augment
from mmjax.models.audio import AudioSpec, AudioTransformer

librosa = pytest.importorskip("librosa")


def test_log_mel_matches_a_numpy_stft_and_the_librosa_filter_bank():
    """Reference: frames of the zero-padded signal (``n_fft // 2`` each side), a periodic
    Hann window (scipy), NumPy's rFFT power, librosa's mel matrix, then the log."""
    front = LogMel(sample_rate=8000, n_fft=256, hop=128, num_mels=32)
    t = np.arange(4000) / 8000
    wave = (0.5 * np.sin(2 * np.pi * 440 * t) + 0.1 * np.sin(2 * np.pi * 1500 * t)).astype(
        np.float32
    )
    got = front(wave)
    padded = np.pad(wave.astype(np.float64), 128)
    n = 1 + len(wave) // 128
    frames = np.stack([padded[i * 128 : i * 128 + 256] for i in range(n)])
    window = scipy.signal.get_window("hann", 256, fftbins=True)
    power = np.abs(np.fft.rfft(frames * window, axis=1)) ** 2  # [frames, 129]
    mel = librosa.filters.mel(sr=8000, n_fft=256, n_mels=32)  # [32, 129]
    want = np.log(power @ mel.T + LOG_FLOOR)
    assert got.shape == (front.frames(4000), 32) == want.shape
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)


def test_pad_frames_pads_masks_and_crops():
    spec = np.arange(5 * 3, dtype=np.float32).reshape(5, 3) + 1
    out, mask = pad_frames(spec, 8)
    np.testing.assert_array_equal(out[:5], spec)
    assert not out[5:].any() and mask.tolist() == [True] * 5 + [False] * 3
    out, mask = pad_frames(spec, 3)
    np.testing.assert_array_equal(out, spec[:3])
    assert mask.all()
    out, _ = pad_frames(spec, 3, np.random.default_rng(0))
    start = int(out[0, 0] - 1) // 3  # a random crop: consecutive frames of the clip
    np.testing.assert_array_equal(out, spec[start : start + 3])


def test_spec_augment_masks_bands_inside_the_real_frames():
    rng = np.random.default_rng(0)
    spec = rng.standard_normal((20, 16)).astype(np.float32) + 5
    padded, mask = pad_frames(spec[:14], 20)
    a = spec_augment(padded, mask, np.random.default_rng(1), 2, 4, 2, 3)
    b = spec_augment(padded, mask, np.random.default_rng(1), 2, 4, 2, 3)
    np.testing.assert_array_equal(a, b)  # deterministic given the generator
    assert not a[14:].any()  # padding untouched
    changed = a[:14] != padded[:14]
    rows, cols = changed.all(1), changed.all(0)
    assert changed.any() and rows.sum() <= 8 and cols.sum() <= 6
    # every changed entry lies in a fully masked frame or a fully masked mel bin
    assert (changed <= (rows[:, None] | cols[None, :])).all()


def model(**kw) -> AudioTransformer:
    base = dict(max_frames=8, num_mels=8, time_patch=2, freq_patch=4, width=16, depth=1)
    return AudioTransformer(AudioSpec(**{**base, "num_heads": 2, "mlp_dim": 32, **kw}))


def test_patches_match_a_numpy_reference():
    m = model(depth=0, posemb="sincos2d")
    rng = np.random.default_rng(0)
    spec = rng.standard_normal((2, 8, 8)).astype(np.float32)
    params = jax.jit(m.init)(jax.random.PRNGKey(0), spec)["params"]
    kernel = rng.standard_normal((2, 4, 1, 16)).astype(np.float32)
    params = dict(nn.unbox(params))
    params["patch_embed"] = {"kernel": kernel, "bias": np.zeros(16, np.float32)}
    _, state = m.apply({"params": params}, spec, capture_intermediates=True, mutable=True)
    got = np.asarray(state["intermediates"]["patch_embed"]["__call__"][0])
    ref = spec.reshape(2, 4, 2, 2, 4).transpose(0, 1, 3, 2, 4).reshape(2, 4, 2, 8)
    np.testing.assert_allclose(got, ref @ kernel.reshape(8, 16), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("pool", ["mean", "cls"])
def test_padded_frames_do_not_reach_the_output(pool):
    """Whatever the padded frames hold, the pooled output and the real tokens are the
    same, and padded tokens are 0 and masked."""
    m = model(pool=pool)
    rng = np.random.default_rng(0)
    spec = rng.standard_normal((2, 8, 8)).astype(np.float32)
    mask = np.arange(8)[None] < np.array([[6], [3]])
    noisy = np.where(mask[..., None], spec, 100 * rng.standard_normal(spec.shape))
    params = jax.jit(m.init)(jax.random.PRNGKey(0), spec, mask)
    a = jax.jit(m.apply)(params, spec * mask[..., None], mask)
    b = jax.jit(m.apply)(params, noisy.astype(np.float32), mask)
    np.testing.assert_allclose(a["pooled"], b["pooled"], rtol=1e-5, atol=1e-5)
    off = 1 if pool == "cls" else 0
    # second clip: 3 real frames -> time patches 0, 1 (first frames 0, 2) are real
    want = [True] * off + [True] * 4 + [False] * 4
    assert np.asarray(b["mask"][1]).tolist() == want
    assert not np.asarray(b["tokens"][1][~np.asarray(want)]).any()
