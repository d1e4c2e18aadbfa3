"""Heads on encoder outputs: tanh pooler, linear classifier, masked-LM head (tied decoder)."""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

from mmjax.models.common import dense, logical_param
from mmjax.models.layers import Dtype, activation, layer_norm


class TanhPooler(nn.Module):
    """BERT / HF-ViT pooler: ``[batch, embed]`` -> ``tanh(dense(x))`` ``[batch, features]``."""

    features: int
    dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        return jnp.tanh(dense(self.features, ("embed", "mlp"), self.dtype, "dense")(x))


class ClassifierHead(nn.Module):
    """Linear classifier: ``[batch, embed]`` -> logits ``[batch, num_classes]``."""

    num_classes: int
    dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        return dense(self.num_classes, ("embed", None), self.dtype, "dense")(x)


class MLMHead(nn.Module):
    """BERT masked-LM head with the decoder tied to the word embeddings.

    ``x`` ``[batch, seq, embed]`` and ``embedding`` ``[vocab, embed]`` (the encoder's
    word-embedding table) -> logits ``[batch, seq, vocab]``:
    ``ln(act(dense(x))) @ embedding.T + bias``.
    """

    act: str = "gelu"
    ln_eps: float = 1e-12
    dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array, embedding: jax.Array) -> jax.Array:
        h = dense(x.shape[-1], ("embed", "mlp"), self.dtype, "transform")(x)
        h = layer_norm(self.ln_eps, self.dtype, name="ln")(activation(self.act)(h))
        bias = logical_param(self, "bias", nn.initializers.zeros, (embedding.shape[0],), ("vocab",))
        logits = jnp.einsum("bse,ve->bsv", h, embedding.astype(self.dtype))
        return logits + bias.astype(self.dtype)
