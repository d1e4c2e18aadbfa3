"""Multi-head attention of the one transformer (self, cross and KV-cached decoding) and
the key-padding helper that turns any padding mask into its keywords.

Used by ``mmjax.models.layers`` (blocks and encoder stacks); see that module's docstring
for the decoding cache and the options."""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from mmjax.models.common import Array, Dtype, kernel_init, logical_param, matmul_2d


def key_padding(padding_mask: Array | None) -> dict[str, Array | None]:
    """``MultiHeadAttention`` / ``Encoder`` keywords ``kv_lengths`` and ``mask`` for a key
    padding mask ``[batch, seq]`` bool (True = real token) of any pattern: left padding
    and holes (an HF tokenizer's ``attention_mask``) are exact.

    A concrete (not traced) right-padded mask becomes ``kv_lengths`` ``[batch]`` int32, so
    cuDNN can run its fused padding kernel; checking that costs one host pass over the
    mask. A traced mask (inside ``jit``), or one that is not right-padded, becomes a
    boolean ``mask`` ``[batch, 1, 1, seq]``: the XLA kernel builds exactly that mask from
    lengths anyway, so nothing is lost there; cuDNN takes it as a bias.
    """
    if padding_mask is None:
        return {"kv_lengths": None, "mask": None}
    if not isinstance(padding_mask, jax.core.Tracer):
        m = np.asarray(padding_mask).astype(bool)
        lengths = m.sum(axis=-1)
        if np.array_equal(m, np.arange(m.shape[-1]) < lengths[..., None]):
            return {"kv_lengths": jnp.asarray(lengths, jnp.int32), "mask": None}
    return {"kv_lengths": None, "mask": jnp.asarray(padding_mask).astype(bool)[:, None, None, :]}


def einsum_dense(
    module: nn.Module, x: Array, kernel: tuple, out_dims: int, use_bias: bool
) -> Array:
    """``x`` ``[..., *in]`` times the kernel ``[*in, *out]`` (``out``: its last ``out_dims``
    dims) in ``module.dtype`` (``common.matmul_2d``) plus, with ``use_bias``, a zero-init
    ``bias`` ``[*out]``. ``kernel``: ``(init, shape, axes)`` of the float32 ``kernel``
    param (logical axis names ``axes``)."""
    init, shape, axes = kernel
    w = logical_param(module, "kernel", init, shape, axes)
    contract = len(shape) - out_dims
    y = matmul_2d(x.astype(module.dtype), w.astype(module.dtype), contract)
    if use_bias:
        zeros = nn.initializers.zeros
        bias = logical_param(module, "bias", zeros, shape[-out_dims:], axes[-out_dims:])
        y = y + bias.astype(module.dtype)
    return y


class HeadsProjection(nn.Module):
    """``[batch, seq, embed]`` -> ``[batch, seq, heads, kv]``; kernel ``[embed, heads, kv]``."""

    num_heads: int
    head_dim: int
    use_bias: bool = True
    dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x: Array) -> Array:
        shape = (x.shape[-1], self.num_heads, self.head_dim)
        kernel = (kernel_init(0, (1, 2)), shape, ("embed", "heads", "kv"))
        return einsum_dense(self, x, kernel, 2, self.use_bias)  # bse,ehd->bshd


class HeadsOutput(nn.Module):
    """``[batch, seq, heads, kv]`` -> ``[batch, seq, embed]``; kernel ``[heads, kv, embed]``."""

    features: int
    use_bias: bool = True
    dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x: Array) -> Array:
        shape = (x.shape[-2], x.shape[-1], self.features)
        kernel = (kernel_init((0, 1), 2), shape, ("heads", "kv", "embed"))
        return einsum_dense(self, x, kernel, 1, self.use_bias)  # bshd,hde->bse


class MultiHeadAttention(nn.Module):
    """Multi-head attention on ``jax.nn.dot_product_attention``.

    Inputs are ``[batch, q_len, embed]`` queries and ``[batch, kv_len, embed]``
    keys/values; the output is ``[batch, q_len, embed]``. Padding is given as
    ``kv_lengths`` (``[batch]``, right-padded keys) so that the cuDNN kernel can
    be used; an arbitrary boolean ``mask`` broadcastable to
    ``[batch, heads, q_len, kv_len]`` is also accepted (XLA kernel only).
    ``decode=True``: self-attention over a key/value cache, one position per call
    (see the module docstring). ``bias``: added to the attention logits, broadcastable to
    ``[batch, heads, q_len, kv_len]`` (BEiT's relative position bias).
    """

    num_heads: int
    head_dim: int | None = None
    qkv_bias: bool = True
    out_bias: bool = True
    dropout_rate: float = 0.0
    dtype: Dtype = jnp.float32
    implementation: str | None = None  # None (XLA), 'xla' or 'cudnn'
    decode: bool = False
    key_bias: bool = True  # with qkv_bias: False drops only the key's bias (BEiT)

    @nn.compact
    def __call__(
        self,
        inputs_q: Array,
        inputs_kv: Array | None = None,
        *,
        causal: bool = False,
        kv_lengths: Array | None = None,
        mask: Array | None = None,
        deterministic: bool = True,
        bias: Array | None = None,
    ) -> Array:
        inputs_kv = inputs_q if inputs_kv is None else inputs_kv
        embed = inputs_q.shape[-1]
        if self.head_dim is None and embed % self.num_heads:
            raise ValueError(f"embed dim {embed} is not divisible by num_heads {self.num_heads}")
        head_dim = self.head_dim or embed // self.num_heads

        def proj(name: str, x: Array, use_bias: bool = self.qkv_bias) -> Array:
            return HeadsProjection(self.num_heads, head_dim, use_bias, self.dtype, name=name)(x)

        q = proj("query", inputs_q)
        k = proj("key", inputs_kv, self.qkv_bias and self.key_bias)
        v = proj("value", inputs_kv)
        q = nn.with_logical_constraint(
            q, ("activation_batch", "activation_length", "activation_heads", "activation_kv")
        )
        k = nn.with_logical_constraint(
            k, ("activation_batch", "activation_length", "activation_heads", "activation_kv")
        )
        v = nn.with_logical_constraint(
            v, ("activation_batch", "activation_length", "activation_heads", "activation_kv")
        )
        if self.decode:
            cached = self._update_cache(k, v, kv_lengths, mask)
            if cached is not None:  # a decode step: attend to the positions written so far
                k, v, kv_lengths = cached
                causal = False

        # The fused kernels have no attention-probability dropout; dropout is
        # applied to the attention output instead, which keeps the fast path.
        out = jax.nn.dot_product_attention(
            q,
            k,
            v,
            bias=None if bias is None else bias.astype(q.dtype),
            mask=mask,
            is_causal=causal,
            key_value_seq_lengths=kv_lengths,
            implementation=self.implementation,
        )  # [batch, q_len, heads, head_dim]
        out = nn.with_logical_constraint(
            out, ("activation_batch", "activation_length", "activation_heads", "activation_kv")
        )
        out = HeadsOutput(embed, self.out_bias, self.dtype, name="out")(out)
        return nn.Dropout(self.dropout_rate)(out, deterministic=deterministic)

    def _update_cache(
        self, k: Array, v: Array, kv_lengths: Array | None, mask: Array | None
    ) -> tuple[Array, Array, Array] | None:
        """Decode mode. The first call creates the zero cache from ``k``/``v``
        ``[batch, max_len, heads, kv]`` and returns ``None`` (plain attention); later calls
        write the one new position at ``cache_index`` and return the whole cache with
        ``kv_lengths`` ``[batch]`` = positions written (the later ones are still zeros)."""
        initialized = self.has_variable("cache", "cached_key")
        cached_key = self.variable("cache", "cached_key", jnp.zeros, k.shape, k.dtype)
        cached_value = self.variable("cache", "cached_value", jnp.zeros, v.shape, v.dtype)
        cache_index = self.variable("cache", "cache_index", lambda: jnp.zeros((), jnp.int32))
        if not initialized:
            return None
        if k.shape[1] != 1:
            raise ValueError(f"a decode step takes one position [batch, 1, embed], got {k.shape}")
        if kv_lengths is not None or mask is not None:
            raise ValueError("a decode step masks by cache_index; kv_lengths/mask must be None")
        if cached_key.value.shape[0] != k.shape[0]:
            raise ValueError(
                f"the cache holds batch {cached_key.value.shape[0]}, the step {k.shape[0]}"
            )
        i = cache_index.value
        cached_key.value = jax.lax.dynamic_update_slice(
            cached_key.value, k.astype(cached_key.value.dtype), (0, i, 0, 0)
        )
        cached_value.value = jax.lax.dynamic_update_slice(
            cached_value.value, v.astype(cached_value.value.dtype), (0, i, 0, 0)
        )
        cache_index.value = i + 1
        lengths = jnp.full((k.shape[0],), i + 1, jnp.int32)
        return cached_key.value, cached_value.value, lengths
