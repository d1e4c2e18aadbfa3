"""Tensor Fusion Network (Zadeh et al. 2017) and Low-rank Multimodal Fusion (Liu et al. 2018)."""

from __future__ import annotations

import dataclasses

import flax.linen as nn
import jax.numpy as jnp

from mmjax.models.common import logical_param
from mmjax.models.fusion.common import (
    INTO_WIDTH,
    Fused,
    Modalities,
    VectorFusionSpec,
    pooled_of,
)
from mmjax.models.heads import dense
from mmjax.models.kinds import register_fusion
from mmjax.models.layers import kernel_init
from mmjax.models.spec import SpecModule


def tensor_features(hidden: int, num_modalities: int) -> int:
    """Features of the flattened full fusion tensor: ``(hidden + 1) ** num_modalities``."""
    return (hidden + 1) ** num_modalities


@dataclasses.dataclass(frozen=True, kw_only=True)
class TensorSpec(VectorFusionSpec):
    """``TensorFusion``'s options: per-modality projection width ``hidden``, CP ``rank``
    of the fusion weight (0: the full tensor, at most ``max_features`` features)."""

    hidden: int = 32
    rank: int = 0
    max_features: int = 2**20

    def __post_init__(self) -> None:
        if self.rank < 0:
            raise ValueError(f"rank must be >= 0, got {self.rank}")


@dataclasses.dataclass(frozen=True, kw_only=True)
class LowRankSpec(TensorSpec):
    """``kind='tensor_lowrank'``: ``TensorFusion`` with a CP rank >= 1."""

    rank: int = 4

    def __post_init__(self) -> None:
        if self.rank < 1:
            raise ValueError(f"rank must be >= 1 for tensor_lowrank: {self.rank}")


@register_fusion("tensor")
class TensorFusion(SpecModule):
    """Tensor Fusion Network (``rank=0``) or Low-rank Multimodal Fusion (``rank>0``).

    pooled ``x_i`` ``[batch, d_i]`` -> ``{'pooled': [batch, width]}``. Each modality is
    linearly projected to ``hidden`` and a constant 1 is appended: ``z_i = [W_i x_i +
    b_i, 1]`` ``[batch, hidden + 1]`` (the 1 keeps the unimodal and lower-order terms).

    ``rank=0`` (Zadeh et al. 2017): ``out = Dense(width)(flatten(z_1 ⊗ z_2 ⊗ ...))``; the
    flattened tensor has ``(hidden + 1) ** n`` features and more than ``max_features`` is
    an error (use ``rank``).
    ``rank>0`` (Liu et al. 2018): factors ``W_i`` ``[rank, hidden + 1, width]``;
    ``out = sum_r prod_i (z_i @ W_i[r]) + bias``, the same map as the full tensor with a
    weight of CP rank ``rank``, in ``O(n * rank * hidden * width)``.
    """

    spec: TensorSpec

    @nn.compact
    def __call__(self, modalities: Modalities, *, deterministic: bool = True) -> Fused:
        pooled = pooled_of("TensorFusion", modalities)
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
            return {"pooled": dense(self.width, INTO_WIDTH, self.dtype, "out")(t)}
        out = None
        for i, z in enumerate(zs):
            factor = logical_param(
                self,
                f"factor_{i}",
                kernel_init(1, 2),
                (self.rank, self.hidden + 1, self.width),
                (None, None, "embed"),
            )
            f = jnp.einsum("bh,rho->bro", z, factor.astype(self.dtype))
            out = f if out is None else out * f
        bias = logical_param(self, "bias", nn.initializers.zeros, (self.width,), ("embed",))
        return {"pooled": jnp.sum(out, axis=1) + bias.astype(self.dtype)}


@register_fusion("tensor_lowrank")
class LowRankTensorFusion(TensorFusion):
    """``TensorFusion`` with ``rank >= 1`` (Low-rank Multimodal Fusion)."""

    spec: LowRankSpec
