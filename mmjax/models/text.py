"""Text encoders on the shared transformer: CLIP-style (causal, EOT pooling) and BERT-style."""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

from mmjax.models.layers import (
    Dtype,
    Encoder,
    dense_init,
    kernel_init,
    key_padding,
    layer_norm,
)


def embed(vocab_size: int, width: int, name: str) -> nn.Embed:
    """Token embedding table ``[vocab, embed]`` with logical axis names."""
    return nn.Embed(
        vocab_size,
        width,
        embedding_init=nn.with_logical_partitioning(dense_init(), ("vocab", "embed")),
        name=name,
    )


def position_embedding(module: nn.Module, length: int, width: int, name: str) -> jax.Array:
    """Learned positions ``[length, embed]``."""
    return module.param(
        name,
        nn.with_logical_partitioning(nn.initializers.normal(0.01), (None, "embed")),
        (length, width),
        jnp.float32,
    )


class CLIPTextTransformer(nn.Module):
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

    vocab_size: int
    context_length: int
    width: int
    depth: int
    num_heads: int
    mlp_dim: int
    eos_id: int
    act: str = "quick_gelu"
    ln_eps: float = 1e-5
    causal: bool = True
    pool: str = "eos"
    use_padding_mask: bool = True
    dropout_rate: float = 0.0
    dtype: Dtype = jnp.float32
    attention_impl: str | None = None
    remat: str = "none"  # layers.Encoder: 'none' | 'full' | 'dots_saveable'
    scan_layers: bool = False  # layers.Encoder: params stacked on a leading layers axis

    @nn.compact
    def __call__(
        self,
        tokens: jax.Array,
        padding_mask: jax.Array | None = None,
        *,
        deterministic: bool = True,
    ) -> dict[str, jax.Array]:
        if self.pool not in ("eos", "last"):
            raise ValueError(f"unknown pool {self.pool!r}; known: ('eos', 'last')")
        seq = tokens.shape[1]
        if seq > self.context_length:
            raise ValueError(f"text has {seq} tokens, context_length is {self.context_length}")
        x = embed(self.vocab_size, self.width, "token_embed")(tokens)
        pos = position_embedding(self, self.context_length, self.width, "pos_embed")
        x = (x + pos[None, :seq]).astype(self.dtype)
        x = Encoder(
            depth=self.depth,
            num_heads=self.num_heads,
            mlp_dim=self.mlp_dim,
            pre_norm=True,
            act=self.act,
            ln_eps=self.ln_eps,
            dropout_rate=self.dropout_rate,
            dtype=self.dtype,
            attention_impl=self.attention_impl,
            remat=self.remat,
            scan_layers=self.scan_layers,
            name="encoder",
        )(
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


class BertEncoder(nn.Module):
    """BERT-style bidirectional post-LN encoder.

    ``tokens`` / ``padding_mask`` / ``token_types`` are ``[batch, seq]`` (the mask: True =
    real token, any pattern such as left padding; see ``layers.key_padding``).
    Returns ``{'tokens': [batch, seq, width], 'pooled': [batch, width]}``;
    ``pooled`` is ``tanh(dense(h[CLS]))`` (BERT's pooler, ``pool='cls'``) or the
    masked mean (``'mean'``); ``pool='none'`` returns no ``pooled`` (BertForMaskedLM
    has no pooler).
    """

    vocab_size: int
    max_positions: int
    width: int
    depth: int
    num_heads: int
    mlp_dim: int
    type_vocab_size: int = 2
    act: str = "gelu"
    ln_eps: float = 1e-12
    pool: str = "cls"
    dropout_rate: float = 0.0
    dtype: Dtype = jnp.float32
    attention_impl: str | None = None
    remat: str = "none"  # layers.Encoder: 'none' | 'full' | 'dots_saveable'
    scan_layers: bool = False  # layers.Encoder: params stacked on a leading layers axis

    @nn.compact
    def __call__(
        self,
        tokens: jax.Array,
        padding_mask: jax.Array | None = None,
        token_types: jax.Array | None = None,
        *,
        deterministic: bool = True,
    ) -> dict[str, jax.Array]:
        if self.pool not in ("cls", "mean", "none"):
            raise ValueError(f"unknown pool {self.pool!r}; known: ('cls', 'mean', 'none')")
        seq = tokens.shape[1]
        if seq > self.max_positions:
            raise ValueError(f"text has {seq} tokens, max_positions is {self.max_positions}")
        if token_types is None:
            token_types = jnp.zeros_like(tokens)
        x = embed(self.vocab_size, self.width, "word_embed")(tokens)
        x = x + position_embedding(self, self.max_positions, self.width, "pos_embed")[None, :seq]
        x = x + embed(self.type_vocab_size, self.width, "type_embed")(token_types)
        x = layer_norm(self.ln_eps, self.dtype, name="ln_embed")(x.astype(self.dtype))
        x = nn.Dropout(self.dropout_rate)(x, deterministic=deterministic)
        x = Encoder(
            depth=self.depth,
            num_heads=self.num_heads,
            mlp_dim=self.mlp_dim,
            pre_norm=False,
            act=self.act,
            ln_eps=self.ln_eps,
            dropout_rate=self.dropout_rate,
            dtype=self.dtype,
            attention_impl=self.attention_impl,
            remat=self.remat,
            scan_layers=self.scan_layers,
            name="encoder",
        )(x, **key_padding(padding_mask), deterministic=deterministic)
        if self.pool == "none":
            return {"tokens": x}
        if self.pool == "cls":
            pooled = nn.Dense(
                self.width,
                dtype=self.dtype,
                param_dtype=jnp.float32,
                kernel_init=nn.with_logical_partitioning(kernel_init(), ("embed", "mlp")),
                bias_init=nn.with_logical_partitioning(nn.initializers.zeros, ("mlp",)),
                name="pooler",
            )(x[:, 0])
            pooled = jnp.tanh(pooled)
        else:
            m = (
                jnp.ones(tokens.shape, x.dtype)
                if padding_mask is None
                else padding_mask.astype(x.dtype)
            )
            pooled = jnp.sum(x * m[..., None], axis=1) / jnp.maximum(jnp.sum(m, axis=1), 1)[:, None]
        return {"tokens": x, "pooled": pooled}
