"""A generic modality: float feature sequences (audio frames, video clip features, ...)
turned into ``{'tokens', 'pooled'}`` like the image and text towers, so a new modality
needs no new code (``config.model.features.<name>``, ``kind='sequence'`` by default)."""

from __future__ import annotations

import dataclasses
from typing import ClassVar

import flax.linen as nn
import jax

from mmjax.models.common import check_tokens, key_mask, masked_mean, zero_padding
from mmjax.models.heads import dense
from mmjax.models.kinds import register_image_encoder
from mmjax.models.layers import Encoder, layer_norm
from mmjax.models.spec import SpecModule, TransformerSpec
from mmjax.models.text import position_embedding

Array = jax.Array


@dataclasses.dataclass(frozen=True, kw_only=True)
class SequenceSpec(TransformerSpec):
    """``FeatureSequenceEncoder``'s options: the input feature ``dim``, the longest
    sequence ``max_len`` and the ``width`` (``depth`` may be 0: projection + norm only)."""

    dim: int
    max_len: int
    width: int


@register_image_encoder("sequence")
class FeatureSequenceEncoder(SpecModule):
    """``features`` ``[batch, seq, dim]`` and bool ``mask`` ``[batch, seq]`` ->
    ``{'tokens': [batch, seq, width], 'pooled': [batch, width]}``: a Dense projection,
    learned positions (``seq <= max_len``), a pre-LN ``Encoder`` and a final LayerNorm;
    ``pooled`` is the masked mean of the normalized tokens and padded tokens are 0.
    """

    spec: SequenceSpec
    takes_mask: ClassVar[bool] = True  # image encoder protocol: see models/kinds.py
    grid_tokens: ClassVar[bool] = False

    @nn.compact
    def __call__(
        self, features: Array, mask: Array, *, deterministic: bool = True
    ) -> dict[str, Array]:
        check_tokens(self.name or "FeatureSequenceEncoder", features, mask)
        seq, dim = features.shape[1:]
        if dim != self.dim:
            raise ValueError(f"{self.name}: features have dim {dim}, expected {self.dim}")
        if seq > self.max_len:
            raise ValueError(f"{self.name}: {seq} feature frames, max_len is {self.max_len}")
        x = dense(self.width, (None, "embed"), self.dtype, "proj")(zero_padding(features, mask))
        pos = position_embedding(self, self.max_len, self.width, "pos_embed")
        x = x + pos[None, :seq].astype(x.dtype)
        x = nn.Dropout(self.dropout_rate)(x, deterministic=deterministic)
        if self.depth:
            x = Encoder(self.spec.transformer(), name="encoder")(
                x, mask=key_mask(mask), deterministic=deterministic
            )
        tokens = zero_padding(layer_norm(self.ln_eps, self.dtype, name="ln_final")(x), mask)
        return {"tokens": tokens, "pooled": masked_mean(tokens, mask)}
