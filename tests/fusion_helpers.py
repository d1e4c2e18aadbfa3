"""Shared by the fusion tests: sizes and params filled from ``jax.eval_shape(init)`` with
seeded NumPy random values (non-zero biases included) instead of running ``init``: on a
CPU, initializing every module eagerly costs seconds per model and is not what these
tests are about."""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

B = 2
WIDTH = 16
AUDIO_MASK = np.array([[1, 0, 1, 1, 0], [1, 1, 1, 1, 1]], bool)  # holes, not only right padding
AUDIO_DIM = 6


def np_params(module: nn.Module, *args, seed: int = 0, **kwargs) -> dict:
    """``module``'s params from eval_shape, filled with seeded NumPy random values."""
    abstract = jax.eval_shape(module.init, jax.random.key(0), *args, **kwargs)
    rng = np.random.default_rng(seed)

    def fill(path, leaf):
        name = jax.tree_util.keystr(path)
        if leaf.ndim >= 2:
            fan_in = int(np.prod(leaf.shape[:-1]))
            value = rng.normal(size=leaf.shape) / np.sqrt(fan_in)
        elif "scale" in name:
            value = 1.0 + 0.1 * rng.normal(size=leaf.shape)
        else:
            value = 0.1 * rng.normal(size=leaf.shape)
        return jnp.asarray(value, leaf.dtype)

    return nn.unbox(jax.tree_util.tree_map_with_path(fill, abstract))
