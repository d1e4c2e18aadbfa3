"""Single-stream (early) fusion: VisualBERT / ViLT."""

from __future__ import annotations

import dataclasses

import flax.linen as nn
import jax.numpy as jnp

from mmjax.models.common import check_tokens, key_mask, logical_param, zero_padding
from mmjax.models.fusion.common import (
    INTO_WIDTH,
    Fused,
    Modalities,
    TransformerFusionSpec,
)
from mmjax.models.heads import dense
from mmjax.models.kinds import register_fusion
from mmjax.models.layers import Encoder, dense_init, layer_norm
from mmjax.models.spec import SpecModule


@dataclasses.dataclass(frozen=True, kw_only=True)
class EarlySpec(TransformerFusionSpec):
    """``EarlyFusion``'s options: the joint transformer's."""


@register_fusion("early")
class EarlyFusion(SpecModule):
    """Single-stream fusion (VisualBERT / ViLT).

    ``modalities[m]['tokens']`` ``[batch, s_m, d_m]`` with bool ``'mask'`` ``[batch, s_m]``
    -> ``{'pooled': [batch, width], 'joint_tokens': [batch, 1 + sum s_m, width],
    'joint_mask': [batch, 1 + sum s_m]}`` plus, with a ``text`` modality, its fused tokens
    ``'tokens'`` ``[batch, s_text, width]`` and ``'mask'``. Each modality gets its own Dense
    to ``width`` (``proj_<i>``) and a learned modality-type embedding (``type_embed[i]``),
    ``i`` its position in ``modalities``; a learned CLS token is prepended; the
    concatenation runs through a pre-LN ``Encoder`` with the joint key mask, then a final
    LayerNorm. ``pooled`` is the normalized CLS token. Token order: CLS, modality 0, ...
    """

    spec: EarlySpec

    @nn.compact
    def __call__(self, modalities: Modalities, *, deterministic: bool = True) -> Fused:
        n = len(modalities)
        type_embed = logical_param(
            self, "type_embed", dense_init(), (n, self.width), (None, "embed")
        )
        cls = logical_param(self, "cls_token", dense_init(), (self.width,), ("embed",))
        batch = next(iter(modalities.values()))["tokens"].shape[0]
        parts = [jnp.broadcast_to(cls.astype(self.dtype), (batch, 1, self.width))]
        joint = [jnp.ones((batch, 1), jnp.bool_)]
        offsets = {}
        for i, (name, mod) in enumerate(modalities.items()):
            t, m = mod["tokens"], mod["mask"]
            check_tokens(f"EarlyFusion modality {name}", t, m)
            offsets[name] = sum(p.shape[1] for p in parts)
            x = dense(self.width, INTO_WIDTH, self.dtype, f"proj_{i}")(zero_padding(t, m))
            parts.append(zero_padding(x + type_embed[i].astype(x.dtype), m))
            joint.append(m)
        x = jnp.concatenate(parts, axis=1)
        mask = jnp.concatenate(joint, axis=1)
        x = nn.Dropout(self.dropout_rate)(x, deterministic=deterministic)
        x = Encoder(self.spec.transformer(), name="encoder")(
            x, mask=key_mask(mask), deterministic=deterministic
        )
        x = zero_padding(layer_norm(self.ln_eps, self.dtype, name="ln_final")(x), mask)
        out = {"pooled": x[:, 0], "joint_tokens": x, "joint_mask": mask}
        if "text" in modalities:  # the fused text-side tokens (e.g. for MLM)
            start, text = offsets["text"], modalities["text"]
            out["tokens"] = x[:, start : start + text["tokens"].shape[1]]
            out["mask"] = text["mask"]
        return out
