"""Late fusion of pooled vectors: concat + MLP, or a gated multimodal unit."""

from __future__ import annotations

import dataclasses

import flax.linen as nn
import jax
import jax.numpy as jnp

from mmjax.models.fusion.common import (
    INTO_WIDTH,
    Fused,
    Modalities,
    VectorFusionSpec,
    pooled_of,
)
from mmjax.models.heads import dense
from mmjax.models.kinds import register_fusion
from mmjax.models.layers import activation
from mmjax.models.spec import SpecModule


@dataclasses.dataclass(frozen=True, kw_only=True)
class LateSpec(VectorFusionSpec):
    """``LateFusion``'s options: the MLP's hidden width (0: ``width``)."""

    hidden: int = 0


@dataclasses.dataclass(frozen=True, kw_only=True)
class GatedSpec(VectorFusionSpec):
    """``GatedFusion``'s options (``width`` and the compute dtype)."""


@register_fusion("late_concat")
class LateFusion(SpecModule):
    """Concatenation of the pooled vectors ``[batch, d_m]`` -> ``{'pooled': [batch, width]}``:
    ``Dense(width)(act(Dense(hidden)(concat_m x_m)))``."""

    spec: LateSpec

    @nn.compact
    def __call__(self, modalities: Modalities, *, deterministic: bool = True) -> Fused:
        joint = jnp.concatenate(
            [p.astype(self.dtype) for p in pooled_of("LateFusion", modalities)], -1
        )
        h = dense(self.hidden or self.width, ("embed", "mlp"), self.dtype, "hidden")(joint)
        h = activation(self.act)(h)
        return {"pooled": dense(self.width, ("mlp", "embed"), self.dtype, "out")(h)}


@register_fusion("gated")
class GatedFusion(SpecModule):
    """Gated multimodal unit (GMU, Arevalo et al. 2017) over the pooled vectors
    ``x_i`` ``[batch, d_i]``: ``h_i = tanh(W_i x_i + b_i)``; gate logits
    ``[batch, n, width]`` = ``W_z concat_i x_i + b_z``; ``z = softmax`` over the modality
    axis (for two modalities the GMU's ``sigmoid`` gate: ``softmax(a, b)_0 =
    sigmoid(a - b)``); ``out = sum_i z_i * h_i``. Returns ``{'pooled': [batch, width],
    'gate': [batch, n, width]}``."""

    spec: GatedSpec

    @nn.compact
    def __call__(self, modalities: Modalities, *, deterministic: bool = True) -> Fused:
        pooled = pooled_of("GatedFusion", modalities)
        joint = jnp.concatenate([p.astype(self.dtype) for p in pooled], axis=-1)
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
