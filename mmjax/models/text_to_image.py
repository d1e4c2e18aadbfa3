"""Text-to-image as an encoder-decoder over image codes (Parti-style, sized for the CPU).

``TextToImage`` joins three parts, all from existing modules:

- ``text``: a text tower (``config.model.text``, the CLIP text transformer): caption
  tokens ``[batch, seq]`` -> ``[batch, seq, width]``, the decoder's cross-attention context
  (with the caption's padding mask);
- ``decoder``: the caption decoder (``mmjax.models.decoder.CaptionDecoder``) over the image
  code vocabulary ``codebook_size + 1`` (the last id is BOS), ``grid * grid + 1`` positions:
  ``[BOS, c_1 .. c_n]`` (row-major codes), position ``i`` predicting code ``i + 1``; causal
  self-attention with a KV cache for sampling, cross-attention to the text;
- ``vqvae``: the image tokenizer (``mmjax.models.vqvae.VQVAE``), frozen by the task's
  rules: images -> codes (the targets) and codes -> pixels (the samples).
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from mmjax.models.decoder import CaptionDecoder
from mmjax.models.vqvae import VQVAE


class TextToImage(nn.Module):
    """See the module docstring. ``images`` are fp32 ``[batch, H, W, 3]`` in ``[0, 1]``."""

    text: nn.Module
    decoder: CaptionDecoder
    vqvae: VQVAE
    code_features: bool = False  # the decoder's code embeddings see the frozen codebook

    @property
    def bos_id(self) -> int:
        """The image-sequence start token: one past the last code."""
        return self.vqvae.codebook_size

    def encode_text(
        self, tokens: jax.Array, padding_mask: jax.Array, *, deterministic: bool = True
    ) -> jax.Array:
        """Caption ``[batch, seq]`` -> context ``[batch, seq, width]`` for the decoder."""
        return self.text(tokens, padding_mask, deterministic=deterministic)["tokens"]

    def logits(
        self,
        codes: jax.Array,
        tokens: jax.Array,
        padding_mask: jax.Array,
        *,
        deterministic: bool = True,
    ) -> jax.Array:
        """Teacher-forced: codes ``[batch, n]`` -> fp32 logits ``[batch, n, codebook_size + 1]``
        of each code given the earlier ones (the decoder reads ``[BOS, c_1 .. c_{n-1}]``)."""
        bos = jnp.full((codes.shape[0], 1), self.bos_id, jnp.int32)
        seq = jnp.concatenate([bos, codes[:, :-1]], axis=1)
        context = self.encode_text(tokens, padding_mask, deterministic=deterministic)
        features = self.token_features()
        out = self.decoder(
            seq, context, padding_mask, deterministic=deterministic, token_features=features
        )
        return out["logits"]

    def token_features(self) -> jax.Array | None:
        """``[codebook_size + 1, code_dim]``: the codebook and a zero row for BOS (no
        gradient), or None without ``code_features``."""
        if not self.code_features:
            return None
        book = jax.lax.stop_gradient(self.vqvae.quantizer.codebook())
        return jnp.concatenate([book, jnp.zeros((1, book.shape[1]), book.dtype)])

    def decode_step(self, seq: jax.Array, context: jax.Array, context_mask: jax.Array) -> jax.Array:
        """One cached decode step (``mutable=['cache']``): ``[batch, 1]`` tokens -> logits
        ``[batch, 1, vocab]``; on ``[batch, len]`` tokens the call that creates the cache."""
        features = self.token_features()
        return self.decoder(seq, context, context_mask, decode=True, token_features=features)[
            "logits"
        ]

    def tokenize(self, images: jax.Array) -> jax.Array:
        """Images -> codes int32 ``[batch, grid * grid]`` (no gradient)."""
        return jax.lax.stop_gradient(self.vqvae.tokenize(images))

    def decode_codes(self, codes: jax.Array) -> jax.Array:
        """Codes ``[batch, grid * grid]`` -> images fp32 ``[batch, H, W, 3]`` (about ``[0, 1]``)."""
        return self.vqvae.decode_codes(codes)

    def __call__(
        self,
        images: jax.Array,
        tokens: jax.Array,
        padding_mask: jax.Array,
        *,
        deterministic: bool = True,
    ) -> dict[str, Any]:
        """``{'codes': [batch, n] (the images' codes), 'logits': [batch, n, vocab]}``."""
        if self.is_initializing():
            self.vqvae(images)  # creates every tokenizer param (its decoder too)
        codes = self.tokenize(images)
        logits = self.logits(codes, tokens, padding_mask, deterministic=deterministic)
        return {"codes": codes, "logits": logits}
