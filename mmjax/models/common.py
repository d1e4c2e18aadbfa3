"""Pieces every mmjax module shares: array / dtype aliases, activations by name, the
initializers, a LayerNorm whose params carry logical axis names, and the padding-mask
helpers (masks are bool ``[batch, seq]``, True = real token)."""

from __future__ import annotations

import math
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


def matmul_2d(x: Array, w: Array, contract: int = 1, precision: Any = None) -> Array:
    """``x`` ``[..., *w.shape[:contract]]`` times ``w`` ``[*in, *out]`` -> ``[..., *out]``, as
    one 2-D matmul ``[rows, K] @ [K, N]`` (reshapes of contiguous dims are free).

    The same sums as ``einsum`` / ``nn.Dense``'s dot, but every dot of the step, the
    backward ones included, has one contracting dim: XLA:CPU then runs the backward
    ``dy @ w.T`` and ``x.T @ dy`` without first copying a transposed weight or activation
    (a dot that contracts two dims, as ``[b, s, e] x [e, h, d]``'s weight gradient does,
    is canonicalized through such copies).
    """
    lead, k_dims, out = x.shape[: x.ndim - contract], w.shape[:contract], w.shape[contract:]
    if x.shape[x.ndim - contract :] != k_dims:
        raise ValueError(f"matmul_2d: x {x.shape} does not end in w's input dims {k_dims}")
    k = math.prod(k_dims)
    y = jnp.dot(x.reshape(math.prod(lead), k), w.reshape(k, math.prod(out)), precision=precision)
    return y.reshape(*lead, *out)


def _dense_dot_general(lhs: Array, rhs: Array, dimension_numbers: Any, **kw: Any) -> Array:
    """``nn.Dense``'s ``dot_general`` (``x`` ``[..., in]``, kernel ``[in, out]``): ``matmul_2d``."""
    del dimension_numbers  # always ((x.ndim - 1,), (0,)), no batch dims
    return matmul_2d(lhs, rhs, precision=kw.get("precision"))


def dense(
    features: int,
    axes: tuple[str | None, str | None],
    dtype: Dtype,
    name: str,
    use_bias: bool = True,
) -> nn.Dense:
    """``nn.Dense`` (float32 params, ``dtype`` compute) whose kernel / bias carry the logical
    ``axes`` / ``axes[1]``."""
    return nn.Dense(
        features,
        use_bias=use_bias,
        dtype=dtype,
        param_dtype=jnp.float32,
        dot_general=_dense_dot_general,
        kernel_init=nn.with_logical_partitioning(kernel_init(), axes),
        bias_init=nn.with_logical_partitioning(nn.initializers.zeros, (axes[1],)),
        name=name,
    )


def logical_param(
    module: nn.Module, name: str, init: nn.initializers.Initializer, shape: tuple, axes: tuple
) -> Array:
    """``module``'s float32 param ``name`` of ``shape``, its dims named ``axes`` (logical
    axis names, for the sharding rules); cast it to the compute dtype at the use."""
    return module.param(name, nn.with_logical_partitioning(init, axes), shape, jnp.float32)


def learned_queries(
    module: nn.Module, name: str, init: nn.initializers.Initializer, shape: tuple, batch: int
) -> Array:
    """``[batch, n, embed]`` in ``module.dtype``: learned float32 queries ``name`` of ``shape``
    (``[n, embed]``, or a SigLIP probe's ``[1, 1, embed]``; ``embed`` sharded), the same for
    every row of the batch (attention poolers)."""
    axes = (None,) * (len(shape) - 1) + ("embed",)
    queries = logical_param(module, name, init, shape, axes).astype(module.dtype)
    return jnp.broadcast_to(queries, (batch, *shape[-2:]))


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


def zero_padding(tokens: Array, mask: Array) -> Array:
    """``[batch, seq, dim]`` with padded positions (``mask`` False) set to exactly 0
    (``jnp.where``, so even NaN padding is harmless)."""
    return jnp.where(mask[..., None], tokens, jnp.zeros((), tokens.dtype))


def key_mask(mask: Array) -> Array:
    """Key-padding mask ``[batch, seq]`` -> ``[batch, 1, 1, seq]`` for ``MultiHeadAttention``."""
    return mask[:, None, None, :]


def masked_mean(tokens: Array, mask: Array) -> Array:
    """Mean over real tokens: ``[batch, seq, dim]``, ``[batch, seq]`` -> ``[batch, dim]``."""
    m = mask.astype(tokens.dtype)[..., None]
    total = jnp.sum(zero_padding(tokens, mask) * m, axis=1)
    return total / jnp.maximum(jnp.sum(m, axis=1), 1)


def check_tokens(name: str, tokens: Array, mask: Array) -> None:
    """Shape check: ``tokens`` ``[batch, seq, dim]`` and bool ``mask`` ``[batch, seq]``."""
    if tokens.ndim != 3:
        raise ValueError(f"{name}: tokens must be [batch, seq, dim], got shape {tokens.shape}")
    if mask.shape != tokens.shape[:2]:
        raise ValueError(f"{name}: mask {mask.shape} != tokens' [batch, seq] {tokens.shape[:2]}")
    if mask.dtype != jnp.bool_:
        raise ValueError(f"{name}: mask must be bool (True = real token), got {mask.dtype}")


def patch_embedding(width: int, patch: tuple[int, ...], use_bias: bool, dtype: Dtype) -> nn.Conv:
    """Non-overlapping patches (a convolution with stride = kernel = ``patch``, 2-D for
    images / spectrograms, 3-D tubelets for video) to ``width`` features, named
    ``patch_embed``; the kernel ``[*patch, channels, width]`` carries ``embed`` last."""
    return nn.Conv(
        width,
        kernel_size=patch,
        strides=patch,
        padding="VALID",
        use_bias=use_bias,
        dtype=dtype,
        param_dtype=jnp.float32,
        kernel_init=nn.with_logical_partitioning(
            nn.initializers.lecun_normal(), (*(None,) * (len(patch) + 1), "embed")
        ),
        bias_init=nn.with_logical_partitioning(nn.initializers.zeros, ("embed",)),
        name="patch_embed",
    )
