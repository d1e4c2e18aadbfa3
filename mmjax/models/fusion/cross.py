"""Cross-attention fusion (ALBEF / BLIP fusion encoder) and ViLBERT co-attention."""

from __future__ import annotations

import dataclasses
from typing import ClassVar

import flax.linen as nn
import jax.numpy as jnp

from mmjax.models.common import check_tokens, key_mask, zero_padding
from mmjax.models.fusion.common import (
    INTO_WIDTH,
    Array,
    Fused,
    Modalities,
    TransformerFusionSpec,
    first_real,
)
from mmjax.models.heads import dense
from mmjax.models.kinds import register_fusion
from mmjax.models.layers import Encoder, layer_norm, remat_block
from mmjax.models.spec import SpecModule


@dataclasses.dataclass(frozen=True, kw_only=True)
class CrossAttentionSpec(TransformerFusionSpec):
    """``CrossAttentionFusion``'s options; the text is the query stream."""

    needs: ClassVar[tuple[str, ...]] = ("text",)


@dataclasses.dataclass(frozen=True, kw_only=True)
class CoAttentionSpec(CrossAttentionSpec):
    """``CoAttentionFusion``'s options (two streams, each with its own blocks)."""


@register_fusion("cross_attention")
class CrossAttentionFusion(SpecModule):
    """Fusion by cross-attention from the ``text`` stream (query) to the other modalities
    (context: their tokens concatenated along ``seq`` in order, masks likewise).

    ``modalities['text']`` ``[batch, sq, dq]`` + mask, the others ``[batch, sc_m, dc_m]``
    + masks -> ``{'tokens': [batch, sq, width], 'mask': [batch, sq], 'pooled':
    [batch, width]}`` (+ ``'context_tokens': [batch, sc, width]`` and ``'context_mask'``
    for co-attention). When the context modalities differ in dim, each whose dim is not
    ``width`` first gets its own Dense to ``width`` (``context_proj_<modality>``); then
    query / context are projected to ``width`` (``query_proj`` / ``context_proj``) only
    when their last dim differs from it.

    One-way (ALBEF / BLIP fusion encoder): a pre-LN ``Encoder(cross_attention=True)``;
    each layer self-attends over the query (masked by its mask) and cross-attends to the
    context (masked by the context mask); a final LayerNorm; ``pooled`` is the normalized
    query token 0 (the text CLS / BOS).
    """

    spec: CrossAttentionSpec

    @nn.compact
    def __call__(self, modalities: Modalities, *, deterministic: bool = True) -> Fused:
        query = modalities["text"]
        context, context_mask = self._context({m: t for m, t in modalities.items() if m != "text"})
        query_mask = query["mask"]
        check_tokens("CrossAttentionFusion query", query["tokens"], query_mask)
        check_tokens("CrossAttentionFusion context", context, context_mask)
        if query["tokens"].shape[0] != context.shape[0]:
            raise ValueError(
                f"query batch {query['tokens'].shape[0]} != context batch {context.shape[0]}"
            )
        q = self._to_width(query["tokens"], query_mask, "query_proj")
        c = self._to_width(context, context_mask, "context_proj")
        out = self.streams(q, query_mask, c, context_mask, deterministic)
        return {**out, "mask": query_mask}

    def streams(
        self, q: Array, query_mask: Array, c: Array, context_mask: Array, deterministic: bool
    ) -> dict[str, Array]:
        """The fusion proper on ``width``-wide query / context tokens."""
        x = Encoder(self.spec.transformer(), cross_attention=True, name="encoder")(
            q,
            mask=key_mask(query_mask),
            context=c,
            context_mask=context_mask,
            deterministic=deterministic,
        )
        x = layer_norm(self.ln_eps, self.dtype, name="ln_final")(x)
        return {"tokens": zero_padding(x, query_mask), "pooled": x[:, 0]}

    def _context(self, mods: Modalities) -> tuple[Array, Array]:
        """Context modalities' tokens / masks concatenated: ``[batch, sc, d]``, ``[batch, sc]``."""
        dims = {e["tokens"].shape[-1] for e in mods.values()}
        tokens = []
        for name, e in mods.items():
            t = e["tokens"]
            if len(dims) > 1 and t.shape[-1] != self.width:
                # zeroed before and after: padding stays out of values and gradients
                proj = dense(self.width, INTO_WIDTH, self.dtype, f"context_proj_{name}")
                t = zero_padding(proj(zero_padding(t, e["mask"])), e["mask"])
            tokens.append(t.astype(self.dtype))
        masks = [e["mask"] for e in mods.values()]
        return jnp.concatenate(tokens, axis=1), jnp.concatenate(masks, axis=1)

    def _to_width(self, x: Array, mask: Array, name: str) -> Array:
        x = zero_padding(x, mask).astype(self.dtype)
        if x.shape[-1] == self.width:
            return x
        return zero_padding(dense(self.width, INTO_WIDTH, self.dtype, name)(x), mask)


@register_fusion("co_attention")
class CoAttentionFusion(CrossAttentionFusion):
    """ViLBERT co-attention: two streams with their own blocks (unrolled: ``scan_layers``
    applies to the one-way encoder only); in layer ``l`` each stream self-attends and then
    cross-attends to the *other* stream's layer ``l - 1`` output. Each stream gets a final
    LayerNorm. ``pooled`` is ``Dense(width)(concat[query token 0, first real context
    token])`` of the normalized streams (ViLBERT multiplies the two CLS vectors; a linear
    map of the concatenation can weigh either side and keeps the magnitude of both)."""

    spec: CoAttentionSpec

    def streams(
        self, q: Array, query_mask: Array, c: Array, context_mask: Array, deterministic: bool
    ) -> dict[str, Array]:
        block = remat_block(self.remat)
        spec = self.spec.transformer()
        for i in range(self.depth):
            # Positional call: nn.remat marks causal / deterministic static by position.
            q_next = block(spec, cross_attention=True, name=f"query_layer_{i}")(
                q, False, None, key_mask(query_mask), deterministic, c, context_mask
            )
            c_next = block(spec, cross_attention=True, name=f"context_layer_{i}")(
                c, False, None, key_mask(context_mask), deterministic, q, query_mask
            )
            q, c = q_next, c_next
        q = layer_norm(self.ln_eps, self.dtype, name="ln_query")(q)
        c = layer_norm(self.ln_eps, self.dtype, name="ln_context")(c)
        both = jnp.concatenate([q[:, 0], first_real(c, context_mask)], axis=-1)
        pooled = dense(self.width, INTO_WIDTH, self.dtype, "pool")(both)
        return {
            "tokens": zero_padding(q, query_mask),
            "pooled": pooled,
            "context_tokens": zero_padding(c, context_mask),
            "context_mask": context_mask,
        }
