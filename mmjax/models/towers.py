"""Two-tower contrastive models (CLIP / SigLIP / LiT) built from the encoders.

``TwoTower`` holds an image encoder under ``image/`` and a text encoder under
``text/`` in the param tree (so freezing rules such as ``image/.*`` read
naturally), linear projections to a shared ``embed_dim`` and a learnable
temperature (and, for SigLIP, a bias).
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from mmjax.models.common import dense, logical_param
from mmjax.models.encoders import build_image_encoder, build_text_encoder
from mmjax.models.spec import SpecModule, dtype_from_name, runtime_fields, spec_from_config

__all__ = [
    "TwoTower",
    "TwoTowerSpec",
    "build_image_encoder",
    "build_text_encoder",
    "build_two_tower",
    "dtype_from_name",
    "l2_normalize",
]
# config.model keys that are not TwoTower's own (its towers' sections, model-wide fields).
SECTIONS = (
    "image",
    "text",
    "features",
    "fusion",
    "dtype",
    "attention_impl",
    "remat",
    "scan_layers",
)


@dataclasses.dataclass(frozen=True, kw_only=True)
class TwoTowerSpec:
    """``TwoTower``'s own options (``config.model``; see the class docstring)."""

    embed_dim: int
    logit_scale_init: float = math.log(1 / 0.07)
    logit_bias_init: float | None = None
    image_projection: bool = True
    proj_bias: bool = False
    dtype: Any = jnp.float32


def l2_normalize(x: jax.Array, eps: float = 1e-6) -> jax.Array:
    """Normalizes the last axis in fp32 (``[..., dim]``)."""
    x = x.astype(jnp.float32)
    return x * jax.lax.rsqrt(jnp.sum(x * x, axis=-1, keepdims=True) + eps)


class TwoTower(SpecModule):
    """Image and text towers with projections and a learnable temperature.

    ``encode_image``: ``[batch, H, W, C]`` -> ``[batch, embed_dim]``, projected and
    not normalized (what transformers' ``get_image_features`` returns).
    ``encode_text``: ``[batch, seq]`` tokens (+ padding mask) -> ``[batch, embed_dim]``,
    likewise. ``__call__`` returns ``{'image', 'text', 'logit_scale', 'logit_bias'}``
    with L2-normalized fp32 embeddings;
    ``logit_scale`` is the log temperature (the loss exponentiates it) and
    ``logit_bias`` is 0 unless ``logit_bias_init`` is set (SigLIP).
    ``image_projection=False`` uses the image tower's pooled output as the embedding
    (SigLIP has no image projection); ``proj_bias`` adds biases to the projections
    (SigLIP's text head).
    """

    spec: TwoTowerSpec
    image: nn.Module
    text: nn.Module

    def setup(self) -> None:
        def proj(name: str) -> nn.Dense:
            axes = ("embed", "proj")
            return dense(self.embed_dim, axes, self.dtype, name, use_bias=self.proj_bias)

        self.image_proj = proj("image_proj") if self.image_projection else None
        self.text_proj = proj("text_proj")
        self.logit_scale = logical_param(
            self, "logit_scale", nn.initializers.constant(self.logit_scale_init), (), ()
        )
        if self.logit_bias_init is not None:
            self.logit_bias = logical_param(
                self, "logit_bias", nn.initializers.constant(self.logit_bias_init), (), ()
            )

    def encode_image(
        self, images: jax.Array, image_mask: jax.Array | None = None, *, deterministic: bool = True
    ) -> jax.Array:
        # image_mask: an audio tower's frame mask [batch, frames] (padded clips)
        masked = () if image_mask is None else (image_mask,)
        pooled = self.image(images, *masked, deterministic=deterministic)["pooled"]
        return pooled if self.image_proj is None else self.image_proj(pooled)

    def encode_text(
        self,
        tokens: jax.Array,
        padding_mask: jax.Array | None = None,
        *,
        deterministic: bool = True,
    ) -> jax.Array:
        pooled = self.text(tokens, padding_mask, deterministic=deterministic)["pooled"]
        return self.text_proj(pooled)

    def __call__(
        self,
        images: jax.Array,
        tokens: jax.Array,
        padding_mask: jax.Array | None = None,
        *,
        image_mask: jax.Array | None = None,
        deterministic: bool = True,
    ) -> dict[str, jax.Array]:
        bias = self.logit_bias if self.logit_bias_init is not None else jnp.zeros((), jnp.float32)
        image = self.encode_image(images, image_mask, deterministic=deterministic)
        return {
            "image": l2_normalize(image),
            "text": l2_normalize(
                self.encode_text(tokens, padding_mask, deterministic=deterministic)
            ),
            "logit_scale": self.logit_scale,
            "logit_bias": bias,
        }


def build_two_tower(cfg: Any) -> TwoTower:
    """``TwoTower`` from ``config.model`` (see ``configs/clip_synthetic.py``)."""
    runtime = runtime_fields(cfg)
    return TwoTower(
        spec_from_config(TwoTowerSpec, cfg, "config.model", SECTIONS, dtype=runtime["dtype"]),
        image=build_image_encoder(cfg.image, **runtime),
        text=build_text_encoder(cfg.text, **runtime),
    )
