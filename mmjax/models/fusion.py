"""Fusion modules: combine the outputs of several modality encoders into one representation.

Token-level fusion (sees every token, takes padding masks):

- ``EarlyFusion``: single-stream (VisualBERT / ViLT): project, add modality-type
  embeddings, prepend a CLS token, one joint transformer.
- ``CrossAttentionFusion``: ALBEF / BLIP fusion encoder (query stream self-attends and
  cross-attends to the context), or with ``bidirectional=True`` ViLBERT co-attention.

Vector-level fusion (pooled ``[batch, dim_i]`` per modality):

- ``LateFusion``: concat + MLP, or a gated multimodal unit (GMU, Arevalo et al. 2017).
- ``TensorFusion``: Tensor Fusion Network (Zadeh et al. 2017) or, with ``rank > 0``,
  Low-rank Multimodal Fusion (Liu et al. 2018).
- ``GraphFusion``: GCN (Kipf & Welling 2017) over one node per modality (+ optional
  token-cluster nodes made by masked attention pooling).

``FeatureSequenceEncoder`` turns any ``[batch, seq, feat_dim]`` float feature sequence
(audio frames, video clip features) into ``{'tokens', 'pooled'}`` like the image and text
towers, so new modalities need no new code.

Masks are bool ``[batch, seq]`` with True = real token. Padding never influences an
output: padded keys are masked out of every attention, padded inputs are replaced by
zeros (``jnp.where``, so even NaN padding is harmless) and padded positions of every
returned token sequence are zero. All transformers are ``layers.Encoder`` /
``layers.TransformerBlock``; all params carry logical axis names.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from mmjax.models.heads import dense
from mmjax.models.layers import (
    Dtype,
    Encoder,
    MultiHeadAttention,
    activation,
    dense_init,
    kernel_init,
    layer_norm,
    remat_block,
)
from mmjax.models.text import position_embedding

Array = jax.Array

# Projections into the fusion width: input features replicated, output on ``embed``.
INTO_WIDTH = (None, "embed")


def zero_padding(tokens: Array, mask: Array) -> Array:
    """``[batch, seq, dim]`` with padded positions (``mask`` False) set to exactly 0."""
    return jnp.where(mask[..., None], tokens, jnp.zeros((), tokens.dtype))


def key_mask(mask: Array) -> Array:
    """Key-padding mask ``[batch, seq]`` -> ``[batch, 1, 1, seq]`` for ``MultiHeadAttention``."""
    return mask[:, None, None, :]


def masked_mean(tokens: Array, mask: Array) -> Array:
    """Mean over real tokens: ``[batch, seq, dim]``, ``[batch, seq]`` -> ``[batch, dim]``."""
    m = mask.astype(tokens.dtype)[..., None]
    total = jnp.sum(zero_padding(tokens, mask) * m, axis=1)
    return total / jnp.maximum(jnp.sum(m, axis=1), 1)


def first_real(tokens: Array, mask: Array) -> Array:
    """The first real token of each row: ``[batch, seq, dim]`` -> ``[batch, dim]``."""
    idx = jnp.argmax(mask, axis=1)
    return jnp.take_along_axis(tokens, idx[:, None, None], axis=1)[:, 0]


def check_tokens(name: str, tokens: Array, mask: Array) -> None:
    """Shape check: ``tokens`` ``[batch, seq, dim]`` and bool ``mask`` ``[batch, seq]``."""
    if tokens.ndim != 3:
        raise ValueError(f"{name}: tokens must be [batch, seq, dim], got shape {tokens.shape}")
    if mask.shape != tokens.shape[:2]:
        raise ValueError(f"{name}: mask {mask.shape} != tokens' [batch, seq] {tokens.shape[:2]}")
    if mask.dtype != jnp.bool_:
        raise ValueError(f"{name}: mask must be bool (True = real token), got {mask.dtype}")


def transformer_kw(m: nn.Module) -> dict:
    """``TransformerBlock`` options read from a fusion module's own fields."""
    return dict(
        num_heads=m.num_heads,
        mlp_dim=m.mlp_dim,
        act=m.act,
        dropout_rate=m.dropout_rate,
        dtype=m.dtype,
        attention_impl=m.attention_impl,
    )


def encoder_of(m: nn.Module, **kw: Any) -> Encoder:
    """A pre-LN ``layers.Encoder`` named ``encoder`` inside the compact module ``m`` (call
    it from ``m.__call__``), configured by ``m``'s ``depth`` / ``remat`` / ``scan_layers``
    and ``transformer_kw(m)``."""
    return Encoder(
        depth=m.depth,
        remat=m.remat,
        scan_layers=m.scan_layers,
        name="encoder",
        **transformer_kw(m),
        **kw,
    )


class FeatureSequenceEncoder(nn.Module):
    """A generic modality: float feature sequences (audio frames, video features, ...).

    ``features`` ``[batch, seq, feat_dim]`` and bool ``mask`` ``[batch, seq]`` ->
    ``{'tokens': [batch, seq, width], 'pooled': [batch, width]}``: a Dense projection,
    learned positions (``seq <= max_len``), a pre-LN ``Encoder`` (``depth`` may be 0) and
    a final LayerNorm; ``pooled`` is the masked mean of the normalized tokens and padded
    tokens are 0. ``feature_dim`` (optional) is checked against the input.
    """

    width: int
    depth: int
    num_heads: int
    mlp_dim: int
    max_len: int
    feature_dim: int | None = None
    act: str = "gelu"
    dropout_rate: float = 0.0
    dtype: Dtype = jnp.float32
    attention_impl: str | None = None
    remat: str = "none"
    scan_layers: bool = False

    @nn.compact
    def __call__(
        self, features: Array, mask: Array, *, deterministic: bool = True
    ) -> dict[str, Array]:
        check_tokens(self.name or "FeatureSequenceEncoder", features, mask)
        seq, dim = features.shape[1:]
        if self.feature_dim is not None and dim != self.feature_dim:
            raise ValueError(f"{self.name}: features have dim {dim}, expected {self.feature_dim}")
        if seq > self.max_len:
            raise ValueError(f"{self.name}: {seq} feature frames, max_len is {self.max_len}")
        x = dense(self.width, INTO_WIDTH, self.dtype, "proj")(zero_padding(features, mask))
        pos = position_embedding(self, self.max_len, self.width, "pos_embed")
        x = x + pos[None, :seq].astype(x.dtype)
        x = nn.Dropout(self.dropout_rate)(x, deterministic=deterministic)
        if self.depth:
            x = encoder_of(self)(x, mask=key_mask(mask), deterministic=deterministic)
        tokens = zero_padding(layer_norm(1e-5, self.dtype, name="ln_final")(x), mask)
        return {"tokens": tokens, "pooled": masked_mean(tokens, mask)}


class EarlyFusion(nn.Module):
    """Single-stream fusion (VisualBERT / ViLT).

    ``tokens[i]`` ``[batch, s_i, d_i]`` with bool ``masks[i]`` ``[batch, s_i]`` ->
    ``{'tokens': [batch, 1 + sum s_i, width], 'pooled': [batch, width],
    'mask': [batch, 1 + sum s_i]}``. Each modality gets its own Dense to ``width`` and a
    learned modality-type embedding; a learned CLS token is prepended; the concatenation
    runs through a pre-LN ``Encoder`` with the joint key mask, then a final LayerNorm.
    ``pooled`` is the normalized CLS token. Token order: CLS, modality 0, modality 1, ...
    """

    width: int
    depth: int
    num_heads: int
    mlp_dim: int
    num_modalities: int
    act: str = "gelu"
    dropout_rate: float = 0.0
    dtype: Dtype = jnp.float32
    attention_impl: str | None = None
    remat: str = "none"
    scan_layers: bool = False  # layers.Encoder: params stacked on a layers axis

    @nn.compact
    def __call__(
        self,
        tokens: Sequence[Array],
        masks: Sequence[Array],
        *,
        deterministic: bool = True,
    ) -> dict[str, Array]:
        if len(tokens) != self.num_modalities or len(masks) != self.num_modalities:
            raise ValueError(
                f"EarlyFusion built for {self.num_modalities} modalities, got "
                f"{len(tokens)} token arrays and {len(masks)} masks"
            )
        type_embed = self.param(
            "type_embed",
            nn.with_logical_partitioning(dense_init(), (None, "embed")),
            (self.num_modalities, self.width),
            jnp.float32,
        )
        cls = self.param(
            "cls_token",
            nn.with_logical_partitioning(dense_init(), ("embed",)),
            (self.width,),
            jnp.float32,
        )
        batch = tokens[0].shape[0]
        parts = [jnp.broadcast_to(cls.astype(self.dtype), (batch, 1, self.width))]
        joint = [jnp.ones((batch, 1), jnp.bool_)]
        for i, (t, m) in enumerate(zip(tokens, masks, strict=True)):
            check_tokens(f"EarlyFusion modality {i}", t, m)
            x = dense(self.width, INTO_WIDTH, self.dtype, f"proj_{i}")(zero_padding(t, m))
            parts.append(zero_padding(x + type_embed[i].astype(x.dtype), m))
            joint.append(m)
        x = jnp.concatenate(parts, axis=1)
        mask = jnp.concatenate(joint, axis=1)
        x = nn.Dropout(self.dropout_rate)(x, deterministic=deterministic)
        x = encoder_of(self)(x, mask=key_mask(mask), deterministic=deterministic)
        x = layer_norm(1e-5, self.dtype, name="ln_final")(x)
        return {"tokens": zero_padding(x, mask), "pooled": x[:, 0], "mask": mask}


class CrossAttentionFusion(nn.Module):
    """Fusion by cross-attention from a query stream (text) to a context (image, ...).

    ``query`` ``[batch, sq, dq]`` with bool ``query_mask`` ``[batch, sq]``, ``context``
    ``[batch, sc, dc]`` with bool ``context_mask`` ``[batch, sc]`` ->
    ``{'tokens': [batch, sq, width], 'pooled': [batch, width]}`` (+ ``'context_tokens':
    [batch, sc, width]`` when ``bidirectional``). Query / context are projected to
    ``width`` by a Dense only when their last dim differs from it.

    One-way (ALBEF / BLIP fusion encoder): a pre-LN ``Encoder(cross_attention=True)``;
    each layer self-attends over the query (masked by ``query_mask``) and cross-attends
    to the context (masked by ``context_mask``); a final LayerNorm; ``pooled`` is the
    normalized query token 0 (the text CLS / BOS).

    ``bidirectional=True`` (ViLBERT co-attention): two streams with their own blocks
    (unrolled: ``scan_layers`` applies to the one-way encoder only);
    in layer ``l`` each stream self-attends and then cross-attends to the *other*
    stream's layer ``l - 1`` output. Each stream gets a final LayerNorm. ``pooled`` is
    ``Dense(width)(concat[query token 0, first real context token])`` of the normalized
    streams (ViLBERT multiplies the two CLS vectors; a linear map of the concatenation
    can weigh either side and keeps the magnitude of both).
    """

    width: int
    depth: int
    num_heads: int
    mlp_dim: int
    bidirectional: bool = False
    act: str = "gelu"
    dropout_rate: float = 0.0
    dtype: Dtype = jnp.float32
    attention_impl: str | None = None
    remat: str = "none"
    scan_layers: bool = False  # layers.Encoder: params stacked on a layers axis

    @nn.compact
    def __call__(
        self,
        query: Array,
        query_mask: Array,
        context: Array,
        context_mask: Array,
        *,
        deterministic: bool = True,
    ) -> dict[str, Array]:
        check_tokens("CrossAttentionFusion query", query, query_mask)
        check_tokens("CrossAttentionFusion context", context, context_mask)
        if query.shape[0] != context.shape[0]:
            raise ValueError(f"query batch {query.shape[0]} != context batch {context.shape[0]}")
        q = self._to_width(query, query_mask, "query_proj")
        c = self._to_width(context, context_mask, "context_proj")
        if not self.bidirectional:
            x = encoder_of(self, cross_attention=True)(
                q,
                mask=key_mask(query_mask),
                context=c,
                context_mask=context_mask,
                deterministic=deterministic,
            )
            x = layer_norm(1e-5, self.dtype, name="ln_final")(x)
            return {"tokens": zero_padding(x, query_mask), "pooled": x[:, 0]}

        block = remat_block(self.remat)
        block_kw = transformer_kw(self)
        for i in range(self.depth):
            # Positional call: nn.remat marks causal / deterministic static by position.
            q_next = block(**block_kw, cross_attention=True, name=f"query_layer_{i}")(
                q, False, None, key_mask(query_mask), deterministic, c, context_mask
            )
            c_next = block(**block_kw, cross_attention=True, name=f"context_layer_{i}")(
                c, False, None, key_mask(context_mask), deterministic, q, query_mask
            )
            q, c = q_next, c_next
        q = layer_norm(1e-5, self.dtype, name="ln_query")(q)
        c = layer_norm(1e-5, self.dtype, name="ln_context")(c)
        both = jnp.concatenate([q[:, 0], first_real(c, context_mask)], axis=-1)
        pooled = dense(self.width, INTO_WIDTH, self.dtype, "pool")(both)
        return {
            "tokens": zero_padding(q, query_mask),
            "pooled": pooled,
            "context_tokens": zero_padding(c, context_mask),
        }

    def _to_width(self, x: Array, mask: Array, name: str) -> Array:
        x = zero_padding(x, mask).astype(self.dtype)
        if x.shape[-1] == self.width:
            return x
        return zero_padding(dense(self.width, INTO_WIDTH, self.dtype, name)(x), mask)


LATE_MODES = ("concat", "gated")


class LateFusion(nn.Module):
    """Fusion of pooled vectors ``pooled[i]`` ``[batch, d_i]`` -> ``{'pooled': [batch, width]}``.

    ``mode='concat'``: ``Dense(width)(act(Dense(hidden)(concat_i x_i)))`` (``hidden=0``:
    ``width``).
    ``mode='gated'``: gated multimodal unit (GMU, Arevalo et al. 2017):
    ``h_i = tanh(W_i x_i + b_i)``; gate logits ``[batch, n, width]`` =
    ``W_z concat_i x_i + b_z``; ``z = softmax`` over the modality axis (for two
    modalities the GMU's ``sigmoid`` gate: ``softmax(a, b)_0 = sigmoid(a - b)``);
    ``out = sum_i z_i * h_i``. Also returns ``'gate'`` ``[batch, n, width]``.
    ``hidden`` is unused in ``gated`` mode.
    """

    width: int
    mode: str = "concat"
    hidden: int = 0
    act: str = "gelu"
    dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, pooled: Sequence[Array]) -> dict[str, Array]:
        if self.mode not in LATE_MODES:
            raise ValueError(f"LateFusion: unknown mode {self.mode!r}; known: {LATE_MODES}")
        check_pooled("LateFusion", pooled)
        joint = jnp.concatenate([p.astype(self.dtype) for p in pooled], axis=-1)
        if self.mode == "concat":
            h = dense(self.hidden or self.width, ("embed", "mlp"), self.dtype, "hidden")(joint)
            h = activation(self.act)(h)
            return {"pooled": dense(self.width, ("mlp", "embed"), self.dtype, "out")(h)}
        n = len(pooled)
        h = jnp.stack(
            [
                jnp.tanh(dense(self.width, INTO_WIDTH, self.dtype, f"proj_{i}")(p))
                for i, p in enumerate(pooled)
            ],
            axis=1,
        )  # [batch, n, width]
        logits = dense(n * self.width, INTO_WIDTH, self.dtype, "gate")(joint)
        logits = logits.reshape(joint.shape[0], n, self.width).astype(jnp.float32)
        gate = jax.nn.softmax(logits, axis=1)
        out = jnp.sum(gate.astype(h.dtype) * h, axis=1)
        return {"pooled": out, "gate": gate}


def check_pooled(name: str, pooled: Sequence[Array]) -> None:
    """At least one ``[batch, dim]`` vector, all with the same batch."""
    if not pooled:
        raise ValueError(f"{name}: no modalities given")
    for i, p in enumerate(pooled):
        if p.ndim != 2 or p.shape[0] != pooled[0].shape[0]:
            raise ValueError(
                f"{name}: pooled[{i}] must be [batch, dim] with batch {pooled[0].shape[0]}, "
                f"got {p.shape}"
            )


def tensor_features(hidden: int, num_modalities: int) -> int:
    """Features of the flattened full fusion tensor: ``(hidden + 1) ** num_modalities``."""
    return (hidden + 1) ** num_modalities


class TensorFusion(nn.Module):
    """Tensor Fusion Network (``rank=0``) or Low-rank Multimodal Fusion (``rank>0``).

    ``pooled[i]`` ``[batch, d_i]`` -> ``{'pooled': [batch, out_dim]}``. Each modality is
    linearly projected to ``hidden`` and a constant 1 is appended: ``z_i = [W_i x_i +
    b_i, 1]`` ``[batch, hidden + 1]`` (the 1 keeps the unimodal and lower-order terms).

    ``rank=0`` (Zadeh et al. 2017): ``out = Dense(out_dim)(flatten(z_1 ⊗ z_2 ⊗ ...))``; the
    flattened tensor has ``(hidden + 1) ** n`` features and more than ``max_features`` is
    an error (use ``rank``).
    ``rank>0`` (Liu et al. 2018): factors ``W_i`` ``[rank, hidden + 1, out_dim]``;
    ``out = sum_r prod_i (z_i @ W_i[r]) + bias``, the same map as the full tensor with a
    weight of CP rank ``rank``, in ``O(n * rank * hidden * out_dim)``.
    """

    out_dim: int
    hidden: int
    rank: int = 0
    max_features: int = 2**20
    dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, pooled: Sequence[Array]) -> dict[str, Array]:
        check_pooled("TensorFusion", pooled)
        if self.rank < 0:
            raise ValueError(f"TensorFusion: rank must be >= 0, got {self.rank}")
        batch = pooled[0].shape[0]
        ones = jnp.ones((batch, 1), self.dtype)
        zs = [
            jnp.concatenate([dense(self.hidden, INTO_WIDTH, self.dtype, f"proj_{i}")(p), ones], -1)
            for i, p in enumerate(pooled)
        ]
        if self.rank == 0:
            size = tensor_features(self.hidden, len(zs))
            if size > self.max_features:
                raise ValueError(
                    f"TensorFusion: the full tensor of {len(zs)} modalities with hidden="
                    f"{self.hidden} has {size} features (> {self.max_features}); lower "
                    "config.model.fusion.hidden or use kind='tensor_lowrank' with "
                    "config.model.fusion.rank"
                )
            t = zs[0]
            for z in zs[1:]:
                t = jnp.einsum("bi,bj->bij", t, z).reshape(batch, -1)
            return {"pooled": dense(self.out_dim, INTO_WIDTH, self.dtype, "out")(t)}
        out = None
        for i, z in enumerate(zs):
            factor = self.param(
                f"factor_{i}",
                nn.with_logical_partitioning(kernel_init(1, 2), (None, None, "embed")),
                (self.rank, self.hidden + 1, self.out_dim),
                jnp.float32,
            )
            f = jnp.einsum("bh,rho->bro", z, factor.astype(self.dtype))
            out = f if out is None else out * f
        bias = self.param(
            "bias",
            nn.with_logical_partitioning(nn.initializers.zeros, ("embed",)),
            (self.out_dim,),
            jnp.float32,
        )
        return {"pooled": jnp.sum(out, axis=1) + bias.astype(self.dtype)}


def normalized_adjacency(adjacency: Array) -> Array:
    """GCN propagation matrix (Kipf & Welling): ``D^-1/2 (A + I) D^-1/2``, ``D`` the degrees
    of ``A + I``; ``[nodes, nodes]`` -> ``[nodes, nodes]``."""
    a = adjacency + jnp.eye(adjacency.shape[0], dtype=adjacency.dtype)
    d = jax.lax.rsqrt(jnp.sum(a, axis=1))
    return a * d[:, None] * d[None, :]


class GraphConv(nn.Module):
    """One GCN layer: ``act(Â H W)``; ``H`` ``[batch, nodes, dim]``, ``Â`` ``[nodes, nodes]``,
    ``W`` ``[dim, features]`` (no bias, as in Kipf & Welling's propagation rule)."""

    features: int
    act: str = "gelu"
    dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, h: Array, adjacency: Array) -> Array:
        w = self.param(
            "kernel",
            nn.with_logical_partitioning(kernel_init(), ("embed", "mlp")),
            (h.shape[-1], self.features),
            jnp.float32,
        )
        hw = jnp.einsum("bnd,df->bnf", h.astype(self.dtype), w.astype(self.dtype))
        return activation(self.act)(jnp.einsum("mn,bnf->bmf", adjacency.astype(self.dtype), hw))


ADJACENCIES = ("learned", "fixed")


class GraphFusion(nn.Module):
    """Graph fusion: a GCN over modality nodes, mean readout.

    Nodes: ``Dense(width)`` of each ``pooled[i]`` ``[batch, d_i]``, and with
    ``clusters_per_modality = k > 0`` also ``k`` nodes per modality, each a masked
    attention pooling (one head, learned query) over that modality's ``tokens[i]``
    ``[batch, s_i, d_i]`` (``masks[i]`` bool ``[batch, s_i]``). Node order: the
    modality nodes, then modality 0's clusters, modality 1's, ...

    Adjacency ``Â`` ``[nodes, nodes]``: ``'fixed'``: the complete graph ``A = 1 - I``
    normalized as ``D^-1/2 (A + I) D^-1/2`` (``normalized_adjacency``); ``'learned'``:
    ``softmax`` over each row of a learned logit matrix (rows sum to 1; the diagonal
    keeps a learned self-loop weight; zero init = uniform). Layers:
    ``H <- H + act(Â H W_l)`` (residual), then a LayerNorm; ``pooled`` = mean over nodes.
    Returns ``{'pooled': [batch, width], 'adjacency': [nodes, nodes], 'nodes':
    [batch, nodes, width]}``.
    """

    width: int
    num_layers: int
    adjacency: str = "learned"
    clusters_per_modality: int = 0
    act: str = "gelu"
    dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(
        self,
        pooled: Sequence[Array],
        tokens: Sequence[Array] | None = None,
        masks: Sequence[Array] | None = None,
    ) -> dict[str, Array]:
        if self.adjacency not in ADJACENCIES:
            raise ValueError(
                f"GraphFusion: unknown adjacency {self.adjacency!r}; known: {ADJACENCIES}"
            )
        check_pooled("GraphFusion", pooled)
        nodes = [
            dense(self.width, INTO_WIDTH, self.dtype, f"node_{i}")(p)[:, None]
            for i, p in enumerate(pooled)
        ]
        k = self.clusters_per_modality
        if k:
            if tokens is None or masks is None or not len(tokens) == len(masks) == len(pooled):
                raise ValueError(
                    "GraphFusion: clusters_per_modality > 0 needs tokens and masks for every "
                    "modality"
                )
            for i, (t, m) in enumerate(zip(tokens, masks, strict=True)):
                check_tokens(f"GraphFusion modality {i}", t, m)
                queries = self.param(
                    f"cluster_queries_{i}",
                    nn.with_logical_partitioning(dense_init(), (None, "embed")),
                    (k, self.width),
                    jnp.float32,
                )
                x = dense(self.width, INTO_WIDTH, self.dtype, f"cluster_proj_{i}")(
                    zero_padding(t, m)
                )
                q = jnp.broadcast_to(queries.astype(self.dtype), (t.shape[0], k, self.width))
                nodes.append(
                    MultiHeadAttention(1, dtype=self.dtype, name=f"cluster_pool_{i}")(
                        q, x, mask=key_mask(m)
                    )
                )
        h = jnp.concatenate(nodes, axis=1).astype(self.dtype)  # [batch, nodes, width]
        n = h.shape[1]
        if self.adjacency == "fixed":
            adj = normalized_adjacency(1.0 - jnp.eye(n, dtype=jnp.float32))
        else:
            logits = self.param(
                "adjacency_logits",
                nn.with_logical_partitioning(nn.initializers.zeros, (None, None)),
                (n, n),
                jnp.float32,
            )
            adj = jax.nn.softmax(logits, axis=-1)
        for i in range(self.num_layers):
            h = h + GraphConv(self.width, self.act, self.dtype, name=f"gcn_{i}")(h, adj)
        h = layer_norm(1e-5, self.dtype, name="ln_final")(h)
        return {"pooled": jnp.mean(h, axis=1), "adjacency": adj, "nodes": h}
