"""The one transformer: attention, MLP, block and encoder stack.

Every encoder and decoder in mmjax (ViT, CLIP text, BERT, fusion encoders)
builds on the modules here; the differences between them are options:
pre- vs post-LayerNorm, causal masking, activation, QKV bias, and for BEiT / DINOv2
an additive attention bias (relative positions), layer scale and a gated (SwiGLU) MLP.

Every parameter carries logical axis names (``embed``, ``mlp``, ``heads``,
``kv``, ``vocab``, ...) through ``nn.with_logical_partitioning`` and the main
activations get ``nn.with_logical_constraint`` at block boundaries under names of their
own (``activation_batch``, ``activation_length``, ``activation_embed``, ...), so the same
module runs on one CPU or a sharded mesh; ``mmjax.parallel.sharding`` maps the logical
names onto mesh axes.

Every option is a field of ``spec.TransformerSpec`` (one frozen dataclass that
``TransformerBlock`` and ``Encoder`` take as their ``spec``).

Memory options of ``Encoder``: ``remat`` recomputes each block's activations in
the backward pass (``'full'``) or keeps only its matmul outputs
(``'dots_saveable'``); ``scan_layers`` runs one ``nn.scan``-ed block over params
stacked on a leading ``layers`` axis (``encoder/layers/block/...``, each leaf
``[depth, ...]``), so compile time does not grow with depth.

Autoregressive decoding: with ``decode=True`` self-attention keeps a key/value
cache in the ``'cache'`` collection (``cached_key`` / ``cached_value``
``[batch, max_len, heads, kv]`` and ``cache_index``, as flax.linen's
``MultiHeadDotProductAttention`` does). A first call on full-length inputs (or
``jax.eval_shape`` of it) only creates the zero cache; every later call takes one
position ``[batch, 1, embed]``, writes its key/value at ``cache_index`` and attends
to the positions written so far. Scanned stacks carry the cache on the leading
``layers`` axis like their params.
"""

from __future__ import annotations

from typing import Any, TypedDict, Unpack

import flax.linen as nn
import jax
import jax.numpy as jnp

from mmjax.models.attention import MultiHeadAttention, key_padding
from mmjax.models.common import (
    ACTIVATIONS,
    Array,
    Dtype,
    activation,
    dense,
    dense_init,
    kernel_init,
    layer_norm,
)
from mmjax.models.relpos import RelativePositionBias
from mmjax.models.spec import TransformerSpec

# Re-exported: encoders import the shared pieces and the attention from this one module.
__all__ = [
    "ACTIVATIONS",
    "Array",
    "Dtype",
    "Encoder",
    "Mlp",
    "MultiHeadAttention",
    "ScanBlock",
    "TransformerBlock",
    "TransformerSpec",
    "activation",
    "dense_init",
    "kernel_init",
    "key_padding",
    "layer_norm",
    "remat_block",
]


class Mlp(nn.Module):
    """Position-wise MLP: ``[batch, seq, embed]`` -> ``[.., mlp]`` -> ``[batch, seq, embed]``."""

    mlp_dim: int
    act: str = "gelu"
    dropout_rate: float = 0.0
    dtype: Dtype = jnp.float32
    gated: bool = False  # GLU: act(wi_gate(x)) * wi(x) (SwiGLU with act='silu')

    @nn.compact
    def __call__(self, x: Array, *, deterministic: bool = True) -> Array:
        embed = x.shape[-1]

        def dense_in(name: str) -> Array:
            return dense(self.mlp_dim, ("embed", "mlp"), self.dtype, name)(x)

        if self.gated:
            h = activation(self.act)(dense_in("wi_gate")) * dense_in("wi")
        else:
            h = activation(self.act)(dense_in("wi"))
        h = nn.with_logical_constraint(
            h, ("activation_batch", "activation_length", "activation_mlp")
        )
        h = nn.Dropout(self.dropout_rate)(h, deterministic=deterministic)
        out = dense(embed, ("mlp", "embed"), self.dtype, "wo")(h)
        return nn.Dropout(self.dropout_rate)(out, deterministic=deterministic)


class BlockOptions(nn.Module):
    """The fields a block and a stack of blocks share: the ``spec`` and the per-use options
    (see ``TransformerBlock``)."""

    spec: TransformerSpec
    cross_attention: bool = False
    decode: bool = False
    rel_pos_grid: tuple[int, int] | None = None


class TransformerBlock(BlockOptions):
    """One transformer layer on ``[batch, seq, embed]`` with the options of ``spec``
    (``spec.depth`` is the stack's, unused here).

    ``pre_norm=True`` is the ViT/CLIP layout (``x + attn(ln(x))``);
    ``pre_norm=False`` is the BERT layout (``ln(x + attn(x))``).
    ``cross_attention=True`` adds a sub-layer between self-attention and the MLP in which
    ``x`` attends to ``context`` ``[batch, ctx_len, ctx_embed]`` (fusion encoders, caption
    decoders); ``context_mask`` bool ``[batch, ctx_len]`` marks its real tokens.
    ``decode=True`` caches the self-attention keys/values (one position per call); the
    cross-attention recomputes its keys/values from ``context`` every call.
    ``bias`` (``[1 or batch, heads, seq, seq]``) is added to the self-attention logits;
    ``rel_pos_grid=(h, w)`` adds this layer's own learned relative position bias
    (``rel_pos_bias/table``; BEiT, for ``1 + h*w`` tokens, class token first).
    ``spec.layer_scale`` (pre-norm only) multiplies each branch by a learned per-channel
    scale (``ls1``, ``ls2`` ``[embed]``, initialized to that value; CaiT / BEiT / DINOv2).
    """

    @nn.compact
    def __call__(
        self,
        x: Array,
        causal: bool = False,
        kv_lengths: Array | None = None,
        mask: Array | None = None,
        deterministic: bool = True,
        context: Array | None = None,
        context_mask: Array | None = None,
        bias: Array | None = None,
    ) -> Array:
        # Positional arguments allowed: nn.remat marks static ones (causal,
        # deterministic) by position.
        s = self.spec
        attn = self._attention("attn", decode=self.decode, key_bias=s.key_bias)
        mlp = Mlp(
            s.mlp_dim,
            act=s.act,
            dropout_rate=s.dropout_rate,
            dtype=s.dtype,
            gated=s.mlp_gated,
            name="mlp",
        )
        ln1 = layer_norm(s.ln_eps, s.dtype, name="ln1")
        ln2 = layer_norm(s.ln_eps, s.dtype, name="ln2")
        if self.rel_pos_grid is not None:
            own = RelativePositionBias(self.rel_pos_grid, s.num_heads, name="rel_pos_bias")()
            bias = own if bias is None else bias + own
        kw = dict(causal=causal, kv_lengths=kv_lengths, mask=mask, deterministic=deterministic)
        kw.update(bias=bias)
        cross = self._cross_attention(context, context_mask, deterministic)
        if s.pre_norm:
            x = x + self._scale("ls1", attn(ln1(x), **kw))
            if cross is not None:
                x = x + cross[0](cross[1](x))
            x = x + self._scale("ls2", mlp(ln2(x), deterministic=deterministic))
        else:  # TransformerSpec rejects layer_scale without pre_norm
            x = ln1(x + attn(x, **kw))
            if cross is not None:
                x = cross[1](x + cross[0](x))
            x = ln2(x + mlp(x, deterministic=deterministic))
        return nn.with_logical_constraint(
            x, ("activation_batch", "activation_length", "activation_embed")
        )

    def _attention(self, name: str, **kw: Any) -> MultiHeadAttention:
        s = self.spec
        return MultiHeadAttention(
            num_heads=s.num_heads,
            qkv_bias=s.qkv_bias,
            dropout_rate=s.dropout_rate,
            dtype=s.dtype,
            implementation=s.attention_impl,
            name=name,
            **kw,
        )

    def _scale(self, name: str, y: Array) -> Array:
        """``y`` times the learned per-channel scale ``name`` ``[embed]`` (``layer_scale``)."""
        if self.spec.layer_scale is None:
            return y
        init = nn.initializers.constant(self.spec.layer_scale)
        init = nn.with_logical_partitioning(init, ("embed",))
        return y * self.param(name, init, (y.shape[-1],), jnp.float32).astype(self.spec.dtype)

    def _cross_attention(
        self, context: Array | None, context_mask: Array | None, deterministic: bool
    ) -> tuple[Any, Any] | None:
        """``(attend, norm)`` of the cross-attention sub-layer, or ``None`` without one."""
        if not self.cross_attention:
            if context is not None:
                raise ValueError("context given to a block built with cross_attention=False")
            return None
        if context is None:
            raise ValueError("a cross-attention block needs a context [batch, ctx_len, embed]")
        attn = self._attention("cross_attn")
        mask = None if context_mask is None else context_mask[:, None, None, :]
        context = context.astype(self.spec.dtype)

        def attend(h: Array) -> Array:
            return attn(h, context, mask=mask, deterministic=deterministic)

        return attend, layer_norm(self.spec.ln_eps, self.spec.dtype, name="ln_cross")


class Encoder(BlockOptions):
    """A stack of ``spec.depth`` transformer blocks on ``[batch, seq, embed]``.

    Returns the final hidden states ``[batch, seq, embed]`` (without a final
    norm: towers add their own, since ViT, CLIP and BERT differ there).
    ``cross_attention`` / ``decode`` / ``rel_pos_grid``: every block's (``TransformerBlock``).
    """

    @nn.compact
    def __call__(self, x: Array, **inputs: Unpack[BlockInputs]) -> Array:
        """``x`` ``[batch, seq, embed]`` and every block's other inputs, by name (see
        ``TransformerBlock.__call__``; omitted ones take its defaults)."""
        unknown = sorted(set(inputs) - set(BLOCK_DEFAULTS))
        if unknown:
            raise TypeError(f"Encoder: unknown inputs {unknown}; known: {list(BLOCK_DEFAULTS)}")
        args = {**BLOCK_DEFAULTS, **inputs}  # in TransformerBlock's positional order
        causal, deterministic = args["causal"], args["deterministic"]
        x = nn.with_logical_constraint(
            x.astype(self.spec.dtype), ("activation_batch", "activation_length", "activation_embed")
        )
        block_kw = dict(
            spec=self.spec,
            cross_attention=self.cross_attention,
            decode=self.decode,
            rel_pos_grid=self.rel_pos_grid,
        )
        block = remat_block(self.spec.remat)
        if self.spec.scan_layers:
            scanned = nn.scan(
                ScanBlock,
                variable_axes={"params": 0, "cache": 0},
                split_rngs={"params": True, "dropout": True},
                in_axes=(nn.broadcast,) * 5,
                length=self.spec.depth,
                metadata_params={nn.PARTITION_NAME: "layers"},
            )
            x, _ = scanned(
                block=block,
                block_kw=block_kw,
                causal=causal,
                deterministic=deterministic,
                name="layers",
            )(x, *(args[k] for k in SCANNED_INPUTS))
            return x
        for i in range(self.spec.depth):
            x = block(**block_kw, name=f"layer_{i}")(x, *args.values())
        return x


class BlockInputs(TypedDict, total=False):
    """A block's inputs besides ``x``, by name: what ``Encoder`` passes to every block."""

    causal: bool
    kv_lengths: Array | None
    mask: Array | None
    deterministic: bool
    context: Array | None
    context_mask: Array | None
    bias: Array | None


# ``TransformerBlock.__call__``'s defaults, in its positional order (``nn.remat`` marks
# ``causal`` and ``deterministic`` static by position); ``ScanBlock`` takes the
# per-step ones positionally and the static two as fields.
BLOCK_DEFAULTS: dict[str, Any] = dict(
    causal=False,
    kv_lengths=None,
    mask=None,
    deterministic=True,
    context=None,
    context_mask=None,
    bias=None,
)
SCANNED_INPUTS = ("kv_lengths", "mask", "context", "context_mask", "bias")


REMAT_POLICIES: dict[str, Any] = {
    "full": None,  # save nothing: recompute the whole block in the backward pass
    "dots_saveable": jax.checkpoint_policies.dots_with_no_batch_dims_saveable,
}


def remat_block(remat: str) -> Any:
    """``TransformerBlock`` (called ``(x, *inputs in BLOCK_DEFAULTS' order)``), wrapped in
    ``nn.remat`` with the named policy unless ``remat == 'none'``."""
    if remat == "none":
        return TransformerBlock
    if remat not in REMAT_POLICIES:
        known = ["none", *REMAT_POLICIES]
        raise ValueError(f"config.model.remat: unknown {remat!r}; known: {known}")
    # argnums count ``self`` (0) and ``x`` (1) before BLOCK_DEFAULTS' order: (2, 5).
    static = tuple(2 + list(BLOCK_DEFAULTS).index(k) for k in ("causal", "deterministic"))
    return nn.remat(TransformerBlock, policy=REMAT_POLICIES[remat], static_argnums=static)


class ScanBlock(nn.Module):
    """One step of the scan over the layer stack:
    ``(x, kv_lengths, mask, context, context_mask, bias) -> (x, None)``."""

    block: Any
    block_kw: dict
    causal: bool = False
    deterministic: bool = True

    @nn.compact
    def __call__(  # noqa: D102
        self,
        x: Array,
        kv_lengths: Array | None,
        mask: Array | None,
        context: Array | None = None,
        context_mask: Array | None = None,
        bias: Array | None = None,
    ):
        x = self.block(**self.block_kw, name="block")(
            x, self.causal, kv_lengths, mask, self.deterministic, context, context_mask, bias
        )
        return x, None
