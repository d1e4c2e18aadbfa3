"""PyTorch's bicubic resizing as weight matrices, so resized position embeddings match
transformers' ``interpolate_pos_encoding`` to float rounding.

``torch.nn.functional.interpolate(mode='bicubic', align_corners=False)`` differs from
``jax.image.resize``: Keys' cubic with ``a = -0.75`` and clamped borders; with
``antialias=True`` it uses PIL's filter (``a = -0.5``) over a support widened by the
scale when shrinking, with the weights of each output normalized and the taps beyond the
border dropped. Both are separable, so a resize is ``W_h @ x @ W_w.T``.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np

MODES = ("bicubic", "bicubic_aa")


def _cubic(x: np.ndarray, a: float) -> np.ndarray:
    x = np.abs(x)
    near = ((a + 2) * x - (a + 3)) * x * x + 1
    far = (((x - 5) * x + 8) * x - 4) * a
    return np.where(x < 1, near, np.where(x < 2, far, 0.0))


def bicubic_weights(in_size: int, out_size: int) -> np.ndarray:
    """``[out, in]`` weights of torch's plain bicubic (``a = -0.75``, borders clamped)."""
    scale = in_size / out_size
    w = np.zeros((out_size, in_size), np.float64)
    for i in range(out_size):
        src = scale * (i + 0.5) - 0.5
        base = min(math.floor(src), in_size - 1)
        t = min(max(src - base, 0.0), 1.0)
        coeffs = _cubic(np.array([t + 1, t, 1 - t, 2 - t]), -0.75)
        for k, c in enumerate(coeffs):
            w[i, min(max(base - 1 + k, 0), in_size - 1)] += c
    return w


def bicubic_aa_weights(in_size: int, out_size: int) -> np.ndarray:
    """``[out, in]`` weights of torch's antialiased bicubic (PIL's filter, ``a = -0.5``)."""
    scale = in_size / out_size
    support = 2.0 * scale if scale >= 1.0 else 2.0
    invscale = 1.0 / scale if scale >= 1.0 else 1.0
    w = np.zeros((out_size, in_size), np.float64)
    for i in range(out_size):
        center = scale * (i + 0.5)
        lo = max(int(center - support + 0.5), 0)
        hi = min(int(center + support + 0.5), in_size)
        taps = _cubic((np.arange(lo, hi) - center + 0.5) * invscale, -0.5)
        total = taps.sum()
        w[i, lo:hi] = taps / total if total != 0 else taps
    return w


def resize_grid(x: jax.Array, size: tuple[int, int], mode: str = "bicubic") -> jax.Array:
    """``[h, w, d]`` -> ``[size[0], size[1], d]`` as torch's ``interpolate`` would,
    computed in fp32 (as transformers does) and returned in ``x.dtype``."""
    if mode not in MODES:
        raise ValueError(f"unknown resize mode {mode!r}; known: {MODES}")
    weights = bicubic_weights if mode == "bicubic" else bicubic_aa_weights
    wh = jnp.asarray(weights(x.shape[0], size[0]), jnp.float32)
    ww = jnp.asarray(weights(x.shape[1], size[1]), jnp.float32)
    y = jnp.einsum("oh,hwd->owd", wh, x.astype(jnp.float32), precision="highest")
    y = jnp.einsum("pw,owd->opd", ww, y, precision="highest")
    return y.astype(x.dtype)
