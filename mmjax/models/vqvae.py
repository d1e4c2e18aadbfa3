"""VQ-VAE image tokenizer (van den Oord et al. 2017): a convolutional encoder, a codebook
quantizer trained by exponential moving averages, and a convolutional decoder.

Shapes: images ``[batch, H, W, 3]`` in ``[0, 1]`` -> encoder output ``z`` ``[batch, h, w,
code_dim]`` with ``h = H / 2**num_downsamples`` -> codes int32 ``[batch, h, w]`` (the nearest
codebook row, squared Euclidean distance) -> the decoder maps the codes' embeddings back
to ``[batch, H, W, 3]`` (unbounded; ``[0, 1]`` is the image's range).

The decoder reads the quantized ``z`` through the straight-through estimator
(``z + stop_gradient(e - z)``): the forward value is the code's embedding ``e``, the
gradient passes to ``z`` unchanged. The encoder is pulled to its codes by the commitment
loss ``|| z - stop_gradient(e) ||^2`` (the task weights it by ``beta``).

Codebook: no gradient reaches it; it is the EMA update of sonnet's ``VectorQuantizerEMA``
(the paper's appendix A.1). Per step, with one-hot assignments ``onehot`` ``[n, K]`` of the
batch's ``n`` vectors ``z`` ``[n, D]`` (``ema_update``)::

    ema_count <- decay * ema_count + (1 - decay) * sum_i onehot[i]          # [K]
    ema_sum   <- decay * ema_sum   + (1 - decay) * onehot.T @ z              # [K, D]

and the codebook is the Laplace-smoothed mean (``codebook_from_ema``; ``N = sum(ema_count)``)::

    codebook = ema_sum / ((ema_count + eps) / (N + K * eps) * N)[:, None]

With ``dead_code_threshold > 0`` codes whose ``ema_count`` falls below it then restart at
the batch's worst-represented vectors (``restart_dead_codes``).

Both statistics are params of the ``quantizer`` (``ema_count``, ``ema_sum``), so they live
in the train state, checkpoint and load as every param does; the task names them as its
``buffers`` (``mmjax.tasks.base.Task``): the trainer freezes them for the optimizer and
applies ``ema_update`` after each step. They start at ``ema_count = 1`` and ``ema_sum`` =
the initial codebook, so the codebook starts where it was initialized.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from mmjax.models.common import logical_param
from mmjax.models.spec import SpecModule


@dataclasses.dataclass(frozen=True, kw_only=True)
class VQVAESpec:
    """``config.model.vqvae``: image side, the conv stacks' widths, the codebook.

    ``num_downsamples`` stride-2 4x4 convolutions (``channels`` wide; the first at half
    width) take ``image_size`` to the code grid ``image_size / 2**num_downsamples``;
    ``num_res_blocks`` residual blocks (3x3 conv to ``res_channels``, 1x1 back) follow in the
    encoder and precede the transposed convolutions of the decoder."""

    image_size: int = 32
    channels: int = 64
    res_channels: int = 32
    num_res_blocks: int = 2
    num_downsamples: int = 2
    codebook_size: int = 256
    code_dim: int = 32
    ema_decay: float = 0.99
    ema_eps: float = 1e-5
    codebook_init_std: float = 0.01
    dead_code_threshold: float = 0.0  # restart codes whose ema_count falls below; 0 = never
    dtype: Any = jnp.float32

    def __post_init__(self) -> None:
        if self.image_size % (2**self.num_downsamples):
            raise ValueError(
                f"image_size {self.image_size} is not divisible by 2**num_downsamples "
                f"({2**self.num_downsamples})"
            )
        if not 0.0 <= self.ema_decay < 1.0 or self.ema_eps <= 0 or self.codebook_size < 2:
            raise ValueError(
                "need 0 <= ema_decay < 1, ema_eps > 0, codebook_size >= 2; got "
                f"{self.ema_decay}, {self.ema_eps}, {self.codebook_size}"
            )

    @property
    def grid(self) -> int:
        """Side of the code grid: ``image_size / 2**num_downsamples``."""
        return self.image_size // 2**self.num_downsamples


def nearest_codes(z: jax.Array, codebook: jax.Array) -> jax.Array:
    """Index of the nearest codebook row (squared Euclidean): ``z`` ``[..., D]``,
    ``codebook`` ``[K, D]`` -> int32 ``[...]`` (fp32 distances)."""
    z = z.astype(jnp.float32)
    codebook = codebook.astype(jnp.float32)
    dist = (
        jnp.sum(z * z, axis=-1, keepdims=True)
        - 2.0 * z @ codebook.T
        + jnp.sum(codebook * codebook, axis=-1)
    )
    return jnp.argmin(dist, axis=-1).astype(jnp.int32)


def codebook_from_ema(ema_count: jax.Array, ema_sum: jax.Array, eps: float) -> jax.Array:
    """The codebook ``[K, D]``: ``ema_sum`` over the Laplace-smoothed ``ema_count`` ``[K]``."""
    n = jnp.sum(ema_count)
    count = (ema_count + eps) / (n + ema_count.shape[0] * eps) * n
    return ema_sum / count[:, None]


def ema_update(
    ema_count: jax.Array, ema_sum: jax.Array, z: jax.Array, codes: jax.Array, decay: float
) -> tuple[jax.Array, jax.Array]:
    """One EMA step of the codebook statistics from the vectors ``z`` ``[..., D]`` assigned
    to ``codes`` ``[...]``: ``(ema_count [K], ema_sum [K, D])`` (module docstring)."""
    z = z.reshape(-1, z.shape[-1]).astype(jnp.float32)
    onehot = jax.nn.one_hot(codes.reshape(-1), ema_count.shape[0], dtype=jnp.float32)
    count = decay * ema_count + (1.0 - decay) * jnp.sum(onehot, axis=0)
    total = decay * ema_sum + (1.0 - decay) * onehot.T @ z
    return count, total


def restart_dead_codes(
    ema_count: jax.Array,
    ema_sum: jax.Array,
    z: jax.Array,
    codes: jax.Array,
    codebook: jax.Array,
    threshold: float,
) -> tuple[jax.Array, jax.Array]:
    """Dead-code restart after an EMA step: every code whose ``ema_count`` ``[K]`` is below
    ``threshold`` restarts at one of the batch's vectors ``z`` ``[..., D]``, the ones worst
    represented by ``codebook`` ``[K, D]`` (the codebook the batch was assigned with, to
    ``codes`` ``[...]``: its nearest codes, the ones ``ema_update`` was given): the
    i-th dead code by index takes the vector with the i-th largest squared distance to its
    nearest code (cycling when more codes than vectors are dead), with count 1 and sum that
    vector, so its smoothed mean is about the vector. Other codes are returned unchanged.

    Why: EMA moves only codes that win vectors; a code no vector picks keeps decaying and is
    never used again (the 48 px tokenizer had 45% of its 256 codes unused after 1,000
    steps). ``ema_count`` is about the code's uses per step, so a threshold of 0.5 restarts
    a code used less than once every two steps."""
    z = z.reshape(-1, z.shape[-1]).astype(jnp.float32)
    err = jnp.sum((z - codebook[codes.reshape(-1)]) ** 2, axis=-1)
    worst = jnp.argsort(-err)  # [n]: the batch's vectors, worst represented first
    dead = ema_count < threshold
    rank = jnp.maximum(jnp.cumsum(dead) - 1, 0) % z.shape[0]
    pick = z[worst[rank]]  # [K, D]: the vector each code would restart at
    count = jnp.where(dead, 1.0, ema_count)
    return count, jnp.where(dead[:, None], pick, ema_sum)


def straight_through(z: jax.Array, quantized: jax.Array) -> jax.Array:
    """``quantized`` in the forward pass; in the backward pass the gradient w.r.t. the
    result goes to ``z`` unchanged (and none to ``quantized``)."""
    return z + jax.lax.stop_gradient(quantized - z)


def _conv(features: int, kernel: int, stride: int, dtype: Any, name: str, up: bool = False):
    """A 2-D (transposed, with ``up``) convolution, ``SAME`` padded, float32 params."""
    cls = nn.ConvTranspose if up else nn.Conv
    return cls(
        features,
        (kernel, kernel),
        strides=(stride, stride),
        padding="SAME",
        dtype=dtype,
        param_dtype=jnp.float32,
        kernel_init=nn.with_logical_partitioning(nn.initializers.lecun_normal(), (None,) * 4),
        bias_init=nn.with_logical_partitioning(nn.initializers.zeros, (None,)),
        name=name,
    )


class ResidualStack(nn.Module):
    """``num_blocks`` x ``x + conv1x1(relu(conv3x3(relu(x))))``, then a ReLU (the paper's)."""

    num_blocks: int
    res_channels: int
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        for i in range(self.num_blocks):
            h = _conv(self.res_channels, 3, 1, self.dtype, f"block_{i}_conv3")(jax.nn.relu(x))
            x = x + _conv(x.shape[-1], 1, 1, self.dtype, f"block_{i}_conv1")(jax.nn.relu(h))
        return jax.nn.relu(x)


class ConvEncoder(SpecModule):
    """Centred images ``[batch, H, W, 3]`` (``[-0.5, 0.5]``) -> ``z`` ``[batch, h, w, D]``."""

    spec: VQVAESpec

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        x = x.astype(self.dtype)
        for i in range(self.num_downsamples):
            width = self.channels // 2 if i < self.num_downsamples - 1 else self.channels
            x = jax.nn.relu(_conv(width, 4, 2, self.dtype, f"down_{i}")(x))
        x = _conv(self.channels, 3, 1, self.dtype, "conv_in")(x)
        x = ResidualStack(self.num_res_blocks, self.res_channels, self.dtype, name="res")(x)
        return _conv(self.code_dim, 1, 1, self.dtype, "to_codes")(x)


class ConvDecoder(SpecModule):
    """Quantized ``[batch, h, w, code_dim]`` -> images ``[batch, H, W, 3]`` (centred)."""

    spec: VQVAESpec

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        x = _conv(self.channels, 3, 1, self.dtype, "conv_in")(x.astype(self.dtype))
        x = ResidualStack(self.num_res_blocks, self.res_channels, self.dtype, name="res")(x)
        for i in range(self.num_downsamples - 1):
            x = jax.nn.relu(_conv(self.channels // 2, 4, 2, self.dtype, f"up_{i}", up=True)(x))
        return _conv(3, 4, 2, self.dtype, "to_pixels", up=True)(x).astype(jnp.float32)


class VectorQuantizer(SpecModule):
    """The EMA codebook (module docstring): params ``ema_count`` ``[K]``, ``ema_sum``
    ``[K, D]``; ``codebook()`` ``[K, D]``; ``__call__(z)`` -> ``(codes [...], e [..., D])``."""

    spec: VQVAESpec

    def setup(self) -> None:
        k, d = self.codebook_size, self.code_dim
        self.ema_count = logical_param(self, "ema_count", nn.initializers.ones, (k,), (None,))
        init = nn.initializers.normal(self.codebook_init_std)
        self.ema_sum = logical_param(self, "ema_sum", init, (k, d), (None, None))

    def codebook(self) -> jax.Array:
        """``[K, D]`` fp32, with no gradient (the EMA rule trains it)."""
        book = codebook_from_ema(self.ema_count, self.ema_sum, self.ema_eps)
        return jax.lax.stop_gradient(book)

    def __call__(self, z: jax.Array) -> tuple[jax.Array, jax.Array]:
        book = self.codebook()
        codes = nearest_codes(z, book)
        return codes, book[codes]


class VQVAE(SpecModule):
    """Encoder + EMA vector quantizer + decoder (module docstring). Images enter and leave
    in ``[0, 1]`` (``[batch, H, W, 3]``); the convolutions see them centred."""

    spec: VQVAESpec

    def setup(self) -> None:
        self.encoder = ConvEncoder(self.spec)
        self.quantizer = VectorQuantizer(self.spec)
        self.decoder = ConvDecoder(self.spec)

    def encode(self, images: jax.Array) -> jax.Array:
        """``[batch, H, W, 3]`` in ``[0, 1]`` -> ``z`` fp32 ``[batch, h, w, code_dim]``."""
        return self.encoder(images - 0.5).astype(jnp.float32)

    def tokenize(self, images: jax.Array) -> jax.Array:
        """``[batch, H, W, 3]`` in ``[0, 1]`` -> codes int32 ``[batch, h * w]`` (row-major)."""
        codes, _ = self.quantizer(self.encode(images))
        return codes.reshape(codes.shape[0], -1)

    def decode_codes(self, codes: jax.Array) -> jax.Array:
        """Codes ``[batch, h * w]`` (row-major) -> images fp32 ``[batch, H, W, 3]`` (about
        ``[0, 1]``; clip to show them)."""
        g = self.spec.grid
        e = self.quantizer.codebook()[codes].reshape(codes.shape[0], g, g, -1)
        return self.decoder(e) + 0.5

    def decode_latents(self, z: jax.Array) -> dict[str, jax.Array]:
        """Encoder outputs ``z`` ``[batch, h, w, code_dim]`` -> ``{'recon' [batch, H, W, 3],
        'z', 'quantized' [batch, h, w, code_dim] (the code embeddings, no gradient),
        'codes' int32 [batch, h, w]}``; the decoder reads ``straight_through(z, quantized)``."""
        codes, quantized = self.quantizer(z)
        recon = self.decoder(straight_through(z, quantized)) + 0.5
        return {"recon": recon, "z": z, "quantized": quantized, "codes": codes}

    def __call__(self, images: jax.Array) -> dict[str, jax.Array]:
        """``decode_latents(encode(images))``."""
        return self.decode_latents(self.encode(images))
