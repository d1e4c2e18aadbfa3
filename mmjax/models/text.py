"""Text encoders on the shared transformer: CLIP-style (causal, EOT pooling) and BERT-style."""

from __future__ import annotations

import dataclasses

import flax.linen as nn
import jax
import jax.numpy as jnp

from mmjax.models.common import dense
from mmjax.models.kinds import register_text_encoder
from mmjax.models.layers import (
    Encoder,
    dense_init,
    key_padding,
    layer_norm,
)
from mmjax.models.spec import SpecModule, TransformerSpec, check_choice


@dataclasses.dataclass(frozen=True, kw_only=True)
class TextSpec(TransformerSpec):
    """What every text transformer has: a vocabulary, learned positions for
    ``context_length`` tokens, a width."""

    vocab_size: int
    context_length: int
    width: int


@dataclasses.dataclass(frozen=True, kw_only=True)
class CLIPTextSpec(TextSpec):
    """``CLIPTextTransformer``'s options (see its docstring)."""

    eos_id: int
    act: str = "quick_gelu"
    causal: bool = True
    pool: str = "eos"
    use_padding_mask: bool = True

    def __post_init__(self) -> None:
        super().__post_init__()
        check_choice("pool", self.pool, ("eos", "last"))


@dataclasses.dataclass(frozen=True, kw_only=True)
class BertTextSpec(TextSpec):
    """``BertEncoder``'s options: post-LN, BERT's LayerNorm eps, token types, pooling."""

    pre_norm: bool = False
    ln_eps: float = 1e-12
    type_vocab_size: int = 2
    pool: str = "cls"

    def __post_init__(self) -> None:
        super().__post_init__()
        check_choice("pool", self.pool, ("cls", "mean", "none"))


def embed(vocab_size: int, width: int, name: str) -> nn.Embed:
    """Token embedding table ``[vocab, embed]`` with logical axis names."""
    return nn.Embed(
        vocab_size,
        width,
        embedding_init=nn.with_logical_partitioning(dense_init(), ("vocab", "embed")),
        name=name,
    )


def text_length(tokens: jax.Array, context_length: int, what: str = "context_length") -> int:
    """``seq`` of ``tokens`` ``[batch, seq]``; ``ValueError`` when it exceeds the module's
    ``context_length`` (its learned position table's length; ``what`` names it)."""
    seq = tokens.shape[1]
    if seq > context_length:
        raise ValueError(f"text has {seq} tokens, {what} is {context_length}")
    return seq


def position_embedding(module: nn.Module, length: int, width: int, name: str) -> jax.Array:
    """Learned positions ``[length, embed]``."""
    return module.param(
        name,
        nn.with_logical_partitioning(nn.initializers.normal(0.01), (None, "embed")),
        (length, width),
        jnp.float32,
    )


@register_text_encoder("clip")
class CLIPTextTransformer(SpecModule):
    """CLIP text tower: causal pre-LN transformer pooled at the end-of-text token.

    ``tokens`` ``[batch, seq]`` int32, ``padding_mask`` ``[batch, seq]`` bool
    (True = real token; any pattern, see ``layers.key_padding``). Returns
    ``{'tokens': [batch, seq, width],
    'pooled': [batch, width]}``; with ``pool='eos'`` ``pooled`` is the final hidden
    state at the first ``eos_id`` token (the last real token when ``eos_id`` is
    absent); with ``pool='last'`` it is the state at the last position of the
    (padded) sequence, SigLIP's text pooling, which pairs with ``causal=False``.

    ``use_padding_mask=False`` ignores ``padding_mask`` inside attention: every position
    attends to every other, padding included. That is how big_vision trains SigLIP's text
    tower and how transformers' ``SiglipModel`` runs it (``SiglipProcessor`` pads to
    ``max_length`` and passes no mask), so the HF SigLIP mapping sets it; with a mask the
    embedding is a different function of the same ids. The mask still finds the last real
    token for ``pool='eos'``.
    """

    spec: CLIPTextSpec

    @nn.compact
    def __call__(
        self,
        tokens: jax.Array,
        padding_mask: jax.Array | None = None,
        *,
        deterministic: bool = True,
    ) -> dict[str, jax.Array]:
        seq = text_length(tokens, self.context_length)
        x = embed(self.vocab_size, self.width, "token_embed")(tokens)
        pos = position_embedding(self, self.context_length, self.width, "pos_embed")
        x = (x + pos[None, :seq]).astype(self.dtype)
        x = Encoder(self.spec.transformer(), name="encoder")(
            x,
            causal=self.causal,
            **key_padding(padding_mask if self.use_padding_mask else None),
            deterministic=deterministic,
        )
        x = layer_norm(self.ln_eps, self.dtype, name="ln_final")(x)
        if self.pool == "last":
            return {"tokens": x, "pooled": x[:, -1]}
        is_eos = tokens == self.eos_id
        if padding_mask is not None:
            # the last True of each row (right, left or holed padding alike)
            last_real = seq - 1 - jnp.argmax(padding_mask[:, ::-1].astype(bool), axis=1)
        else:
            last_real = jnp.full((tokens.shape[0],), seq - 1)
        pool_at = jnp.where(jnp.any(is_eos, axis=1), jnp.argmax(is_eos, axis=1), last_real)
        pooled = jnp.take_along_axis(x, pool_at[:, None, None], axis=1)[:, 0]
        return {"tokens": x, "pooled": pooled}


@register_text_encoder("bert")
class BertEncoder(SpecModule):
    """BERT-style bidirectional post-LN encoder.

    ``tokens`` / ``padding_mask`` / ``token_types`` are ``[batch, seq]`` (the mask: True =
    real token, any pattern such as left padding; see ``layers.key_padding``).
    Returns ``{'tokens': [batch, seq, width], 'pooled': [batch, width]}``;
    ``pooled`` is ``tanh(dense(h[CLS]))`` (BERT's pooler, ``pool='cls'``) or the
    masked mean (``'mean'``); ``pool='none'`` returns no ``pooled`` (BertForMaskedLM
    has no pooler).
    """

    spec: BertTextSpec

    @nn.compact
    def __call__(
        self,
        tokens: jax.Array,
        padding_mask: jax.Array | None = None,
        token_types: jax.Array | None = None,
        *,
        deterministic: bool = True,
    ) -> dict[str, jax.Array]:
        seq = text_length(tokens, self.context_length)
        if token_types is None:
            token_types = jnp.zeros_like(tokens)
        x = embed(self.vocab_size, self.width, "word_embed")(tokens)
        x = x + position_embedding(self, self.context_length, self.width, "pos_embed")[None, :seq]
        x = x + embed(self.type_vocab_size, self.width, "type_embed")(token_types)
        x = layer_norm(self.ln_eps, self.dtype, name="ln_embed")(x.astype(self.dtype))
        x = nn.Dropout(self.dropout_rate)(x, deterministic=deterministic)
        x = Encoder(self.spec.transformer(), name="encoder")(
            x, **key_padding(padding_mask), deterministic=deterministic
        )
        if self.pool == "none":
            return {"tokens": x}
        if self.pool == "cls":
            pooled = dense(self.width, ("embed", "mlp"), self.dtype, "pooler")(x[:, 0])
            pooled = jnp.tanh(pooled)
        else:
            m = (
                jnp.ones(tokens.shape, x.dtype)
                if padding_mask is None
                else padding_mask.astype(x.dtype)
            )
            pooled = jnp.sum(x * m[..., None], axis=1) / jnp.maximum(jnp.sum(m, axis=1), 1)[:, None]
        return {"tokens": x, "pooled": pooled}
