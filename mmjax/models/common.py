"""Pieces every mmjax module shares: array / dtype aliases, activations by name, the
initializers and a LayerNorm whose params carry logical axis names."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

Array = jax.Array
Dtype = Any

ACTIVATIONS: dict[str, Callable[[Array], Array]] = {
    "gelu": lambda x: jax.nn.gelu(x, approximate=False),
    "gelu_tanh": lambda x: jax.nn.gelu(x, approximate=True),
    "quick_gelu": lambda x: x * jax.nn.sigmoid(1.702 * x),
    "relu": jax.nn.relu,
    "silu": jax.nn.silu,
}


def activation(name: str) -> Callable[[Array], Array]:
    """Looks up an activation by name; an unknown name is an error listing the known ones."""
    try:
        return ACTIVATIONS[name]
    except KeyError:
        raise ValueError(f"unknown activation {name!r}; known: {sorted(ACTIVATIONS)}") from None


def dense_init(stddev: float = 0.02) -> nn.initializers.Initializer:
    """Normal init for embeddings and learned tokens."""
    return nn.initializers.normal(stddev=stddev)


def kernel_init(
    in_axis: int | tuple[int, ...] = -2, out_axis: int | tuple[int, ...] = -1
) -> nn.initializers.Initializer:
    """Xavier-uniform for projection kernels (big_vision's ViT init).

    Fan-aware, so narrow models start with block outputs on the scale of the
    residual stream; a fixed small std (BERT's 0.02) leaves a narrow ViT's class
    token nearly identical for every image at init, which stalls contrastive
    training for hundreds of steps.
    """
    return nn.initializers.xavier_uniform(in_axis=in_axis, out_axis=out_axis)


def layer_norm(eps: float, dtype: Dtype, name: str | None = None) -> nn.LayerNorm:
    """LayerNorm whose scale and bias carry the ``embed`` logical axis."""
    return nn.LayerNorm(
        epsilon=eps,
        dtype=dtype,
        param_dtype=jnp.float32,
        scale_init=nn.with_logical_partitioning(nn.initializers.ones, ("embed",)),
        bias_init=nn.with_logical_partitioning(nn.initializers.zeros, ("embed",)),
        name=name,
    )
