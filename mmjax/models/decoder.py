"""Caption decoder and the CoCa model (contrastive captioner, Yu et al. 2022).

``CaptionDecoder`` is an autoregressive text decoder on the shared transformer
(``layers.Encoder``): token embedding + learned positions, ``unimodal_depth``
causal text-only layers, then ``depth`` causal multimodal layers that also
cross-attend to image tokens, a final LayerNorm and a projection to the
vocabulary. The unimodal layers' output at the end-of-text token is CoCa's text
embedding for the contrastive loss; the multimodal layers do the captioning.
With ``decode=True`` every self-attention keeps a key/value cache and the decoder
takes one position per call (``mmjax.models.generate`` drives the loop).

``CoCa`` joins an image encoder (ViT), the decoder, and the two projections +
learned temperature of the contrastive loss.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from mmjax.config import ConfigError
from mmjax.models.common import dense, learned_queries, logical_param
from mmjax.models.layers import (
    Dtype,
    Encoder,
    MultiHeadAttention,
    dense_init,
    layer_norm,
)
from mmjax.models.spec import SpecModule, runtime_fields, spec_from_config
from mmjax.models.text import TextSpec, embed, position_embedding, text_length
from mmjax.models.towers import build_image_encoder, l2_normalize


@dataclasses.dataclass(frozen=True, kw_only=True)
class DecoderSpec(TextSpec):
    """``CaptionDecoder``'s options (``config.model.text`` with ``kind='coca'``): ``depth``
    multimodal (cross-attending) layers after ``unimodal_depth`` text-only ones, positions
    for ``context_length`` tokens, the end-of-text id (CoCa's text pooling)."""

    eos_id: int
    unimodal_depth: int = 0
    tie_embeddings: bool = True


@dataclasses.dataclass(frozen=True, kw_only=True)
class CoCaSpec:
    """``CoCa``'s own options (``config.model``): the contrastive embedding size and
    temperature, and the attentional pooler's query count (0: no pooler)."""

    embed_dim: int = 0
    contrastive: bool = True
    caption_queries: int = 0
    logit_scale_init: float = math.log(1 / 0.07)
    dtype: Dtype = jnp.float32


class CaptionDecoder(SpecModule):
    """Causal text decoder cross-attending to a context (image tokens).

    ``tokens`` int32 ``[batch, seq]`` (BOS first; right padding needs no mask: a causal
    query never sees later positions, and padded positions' outputs are not used);
    ``context`` ``[batch, ctx_len, ctx_embed]`` (any width: the cross-attention projects
    it), ``context_mask`` bool ``[batch, ctx_len]`` or ``None``.

    Returns ``{'unimodal': [batch, seq, width]}`` (LayerNorm-ed output of the unimodal
    layers; only with ``unimodal_depth > 0``) and, when ``context`` is given,
    ``'logits'`` fp32 ``[batch, seq, vocab]``: position ``i`` predicts token ``i + 1``.

    ``tie_embeddings=True`` computes the logits with the transposed token embedding
    (GPT-2 / T5 style, no extra ``[width, vocab]`` matrix); ``False`` adds an untied
    ``lm_head`` Dense with a bias.

    ``decode=True``: a first call on ``[batch, max_decode_len]`` tokens (or
    ``jax.eval_shape`` of it) creates the zero ``'cache'`` collection; each later call
    takes ``[batch, 1]`` tokens at the next position (``cache/position``).
    """

    spec: DecoderSpec

    @nn.compact
    def __call__(
        self,
        tokens: jax.Array,
        context: jax.Array | None = None,
        context_mask: jax.Array | None = None,
        *,
        decode: bool = False,
        deterministic: bool = True,
        token_features: jax.Array | None = None,
    ) -> dict[str, jax.Array]:
        seq = text_length(tokens, self.context_length, "the decoder's context_length")
        token_embed = embed(self.vocab_size, self.width, "token_embed")
        table = None
        if token_features is not None:  # [vocab, F]: the embedding table is learned + W F
            project = dense(self.width, (None, "embed"), self.dtype, "feature_proj", use_bias=False)
            table = token_embed.embedding + project(token_features).astype(jnp.float32)
        pos = position_embedding(self, self.context_length, self.width, "pos_embed")
        if decode:
            stepping = self.has_variable("cache", "position")
            position = self.variable("cache", "position", lambda: jnp.zeros((), jnp.int32))
            if stepping:
                if seq != 1:
                    raise ValueError(f"a decode step takes tokens [batch, 1], got {tokens.shape}")
                pos = jax.lax.dynamic_slice_in_dim(pos, position.value, 1)
                position.value = position.value + 1
        tok = token_embed(tokens) if table is None else jnp.take(table, tokens, axis=0)
        x = (tok + pos[None, :seq]).astype(self.dtype)
        x = nn.Dropout(self.dropout_rate)(x, deterministic=deterministic)
        out = {}
        if self.unimodal_depth:
            unimodal = self.spec.transformer(depth=self.unimodal_depth)
            x = Encoder(unimodal, decode=decode, name="unimodal")(
                x, causal=True, deterministic=deterministic
            )
            out["unimodal"] = layer_norm(self.ln_eps, self.dtype, name="ln_unimodal")(x)
        if context is None:
            return out
        x = Encoder(
            self.spec.transformer(), cross_attention=True, decode=decode, name="multimodal"
        )(
            x,
            causal=True,
            context=context,
            context_mask=context_mask,
            deterministic=deterministic,
        )
        x = layer_norm(self.ln_eps, self.dtype, name="ln_final")(x)
        if self.tie_embeddings and table is not None:
            logits = jnp.dot(x, table.T)  # fp32 table: promoted as nn.Embed.attend does
        elif self.tie_embeddings:
            logits = token_embed.attend(x)
        else:
            logits = dense(self.vocab_size, ("embed", "vocab"), self.dtype, "lm_head")(x)
        out["logits"] = nn.with_logical_constraint(
            logits.astype(jnp.float32),
            ("activation_batch", "activation_length", "activation_vocab"),
        )
        return out


class AttentionalPooler(nn.Module):
    """CoCa's attentional pooler, as open_clip's ``AttentionalPooler``: ``num_queries``
    learned queries, LayerNormed (``ln_q``), attend to the LayerNormed image tokens
    (``ln_k``); then a LayerNorm (``ln``, open_clip's ``ln_post`` that follows its pooler).
    ``[batch, seq, embed]`` -> ``[batch, num_queries, embed]``. With the same weights
    (``attn`` = ``nn.MultiheadAttention``'s in/out projections split by head) it computes
    open_clip's ``ln_post(attn_pool(x))``, so an open_clip CoCa's pooler can be ported."""

    num_queries: int
    num_heads: int
    ln_eps: float = 1e-5
    dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, tokens: jax.Array) -> jax.Array:
        width = tokens.shape[-1]
        shape = (self.num_queries, width)
        queries = learned_queries(self, "queries", dense_init(width**-0.5), shape, len(tokens))
        queries = layer_norm(self.ln_eps, self.dtype, name="ln_q")(queries)
        keys = layer_norm(self.ln_eps, self.dtype, name="ln_k")(tokens)
        pooled = MultiHeadAttention(self.num_heads, dtype=self.dtype, name="attn")(queries, keys)
        return layer_norm(self.ln_eps, self.dtype, name="ln")(pooled)


def eos_pool(x: jax.Array, tokens: jax.Array, eos_id: int) -> jax.Array:
    """``x`` ``[batch, seq, width]`` at each row's first ``eos_id`` token (the last position
    when a truncated row has none) -> ``[batch, width]``."""
    is_eos = tokens == eos_id
    at = jnp.where(jnp.any(is_eos, axis=1), jnp.argmax(is_eos, axis=1), tokens.shape[1] - 1)
    return jnp.take_along_axis(x, at[:, None, None], axis=1)[:, 0]


class CoCa(SpecModule):
    """Contrastive captioner: image encoder + ``CaptionDecoder`` (+ contrastive head).

    The decoder cross-attends to the image encoder's tokens after a LayerNorm
    (``caption_queries == 0``) or to ``caption_queries`` tokens from an
    ``AttentionalPooler`` (CoCa's 256-query pooler; fewer keys per decode step).
    With ``contrastive=True`` the image embedding is the image encoder's pooled output
    (class token or MAP, per its config; CoCa uses a separate 1-query pooler) and the
    text embedding the unimodal decoder output at the end-of-text token (CoCa appends a
    learned CLS token instead; EOT pooling is CLIP's and needs no extra position), each
    projected to ``embed_dim`` and L2-normalized.
    """

    spec: CoCaSpec
    image: nn.Module
    decoder: CaptionDecoder

    def setup(self) -> None:
        if self.caption_queries:
            heads = self.image.num_heads  # the image tower's
            self.pooler = AttentionalPooler(
                self.caption_queries, heads, dtype=self.dtype, name="pooler"
            )
        else:
            self.context_norm = layer_norm(1e-5, self.dtype, name="context_norm")
        if not self.contrastive:
            return
        if not self.decoder.unimodal_depth:
            raise ValueError("the contrastive loss needs unimodal text layers (unimodal_depth > 0)")

        def proj(name: str) -> nn.Dense:
            return dense(self.embed_dim, ("embed", "proj"), self.dtype, name, use_bias=False)

        self.image_proj = proj("image_proj")
        self.text_proj = proj("text_proj")
        self.logit_scale = logical_param(
            self, "logit_scale", nn.initializers.constant(self.logit_scale_init), (), ()
        )

    def encode_image(self, images: jax.Array, *, deterministic: bool = True) -> dict:
        """Normalized images ``[batch, H, W, 3]`` -> ``{'context': [batch, ctx_len, width]}``
        (what the decoder attends to) and, when contrastive, ``'image'`` ``[batch, embed_dim]``
        (L2-normalized fp32)."""
        out = self.image(images, deterministic=deterministic)
        if self.caption_queries:
            context = self.pooler(out["tokens"])
        else:
            context = self.context_norm(out["tokens"])
        result = {"context": context}
        if self.contrastive:
            result["image"] = l2_normalize(self.image_proj(out["pooled"]))
        return result

    def encode_text(self, tokens: jax.Array, *, deterministic: bool = True) -> jax.Array:
        """Tokens ``[batch, seq]`` -> L2-normalized fp32 text embedding ``[batch, embed_dim]``."""
        unimodal = self.decoder(tokens, deterministic=deterministic)["unimodal"]
        return l2_normalize(self.text_proj(eos_pool(unimodal, tokens, self.decoder.eos_id)))

    def decode_step(self, tokens: jax.Array, context: jax.Array) -> jax.Array:
        """One cached decode step (``mutable=['cache']``): ``[batch, 1]`` tokens -> logits
        ``[batch, 1, vocab]``; on ``[batch, len]`` tokens the call that creates the cache."""
        return self.decoder(tokens, context, decode=True)["logits"]

    def __call__(
        self, images: jax.Array, tokens: jax.Array, *, deterministic: bool = True
    ) -> dict[str, jax.Array]:
        """Teacher-forced forward: ``{'logits': [batch, seq, vocab]}`` plus, when
        contrastive, ``'image'``, ``'text'`` ``[batch, embed_dim]`` and ``'logit_scale'``."""
        enc = self.encode_image(images, deterministic=deterministic)
        dec = self.decoder(tokens, enc["context"], deterministic=deterministic)
        out = {"logits": dec["logits"]}
        if self.contrastive:
            out["image"] = enc["image"]
            out["text"] = l2_normalize(
                self.text_proj(eos_pool(dec["unimodal"], tokens, self.decoder.eos_id))
            )
            out["logit_scale"] = self.logit_scale
        return out


def build_coca(model_cfg: Any, contrastive: bool) -> CoCa:
    """``CoCa`` from ``config.model`` (``image``: an image tower as for ``TwoTower``;
    ``text``: the decoder, ``kind='coca'``, see ``configs/caption_coca.py``)."""
    runtime = runtime_fields(model_cfg)
    t = model_cfg.text
    if t.get("kind", "coca") != "coca":
        raise ConfigError(f"config.model.text.kind: the caption task needs 'coca', got {t.kind!r}")
    if contrastive and not t.get("unimodal_depth", 0):
        raise ConfigError(
            "config.model.text.unimodal_depth must be > 0 when config.task.contrastive_weight > 0"
        )
    # bos_id / pad_id are the caption task's (generation, loss mask).
    ignore = ("kind", "bos_id", "pad_id")
    spec = spec_from_config(DecoderSpec, t, "config.model.text", ignore, **runtime)
    own = {k: model_cfg[k] for k in ("embed_dim", "caption_queries", "logit_scale_init")}
    own = {k: v for k, v in own.items() if k in model_cfg}
    return CoCa(
        spec_from_config(CoCaSpec, own, "config.model", contrastive=contrastive, **runtime),
        image=build_image_encoder(model_cfg.image, **runtime),
        decoder=CaptionDecoder(spec),
    )
