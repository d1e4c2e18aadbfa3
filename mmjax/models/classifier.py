"""Classifier models: an encoder (or a fused model) + a classification head, as
``mmjax.tasks.classify`` trains them (moved from the task file; class and param names kept,
so checkpoints restore)."""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from mmjax.models.fused import build_fused_model
from mmjax.models.heads import ClassifierHead, dense
from mmjax.models.layers import Dtype, activation, layer_norm
from mmjax.models.towers import build_image_encoder, build_text_encoder, dtype_from_name


class MlpClassifierHead(nn.Module):
    """``[batch, embed]`` -> ``dense(hidden)`` -> act -> LayerNorm -> logits
    ``[batch, num_classes]`` (the VQA classifier of bottom-up/top-down models)."""

    num_classes: int
    hidden: int
    act: str = "gelu"
    dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        h = activation(self.act)(dense(self.hidden, ("embed", "mlp"), self.dtype, "hidden")(x))
        h = layer_norm(1e-6, self.dtype, name="ln")(h)
        return dense(self.num_classes, ("mlp", None), self.dtype, "out")(h)


class FusedClassifier(nn.Module):
    """An encoder (or ``FusedModel``) + a head: inputs -> logits ``[batch, classes]``.

    Inputs as ``FusedModel.encode`` takes them (``'image'`` normalized ``[batch, H, W, 3]``,
    ``'tokens'`` / ``'padding_mask'`` ``[batch, seq]``, ``'features/<name>'``). With
    ``fused`` set, the head reads the fusion's pooled output and the fused model shares
    this module's scope (its params keep their paths: ``image/``, ``text/``, ``fusion/``);
    otherwise exactly one of ``image`` / ``text`` is set and the head reads its pooled
    output (params under ``image/`` or ``text/``). The head's params live under ``head/``.
    """

    num_classes: int
    fused: nn.Module | None = None
    image: nn.Module | None = None
    text: nn.Module | None = None
    head_hidden: int = 0
    head_act: str = "gelu"
    dtype: Dtype = jnp.float32

    def setup(self) -> None:
        if self.fused is not None:
            nn.share_scope(self, self.fused)
        if self.head_hidden:
            self.head = MlpClassifierHead(
                self.num_classes, self.head_hidden, self.head_act, self.dtype
            )
        else:
            self.head = ClassifierHead(self.num_classes, self.dtype)

    def __call__(self, inputs: dict[str, jax.Array], deterministic: bool = True) -> jax.Array:
        if self.fused is not None:
            pooled = self.fused(inputs, deterministic=deterministic)["pooled"]
        elif self.image is not None:
            pooled = self.image(inputs["image"], deterministic=deterministic)["pooled"]
        else:
            mask = inputs["padding_mask"]
            pooled = self.text(inputs["tokens"], mask, deterministic=deterministic)["pooled"]
        return self.head(pooled).astype(jnp.float32)  # fp32 logits for the loss


def build_classifier(model_cfg: Any, num_classes: int, head_hidden: int = 0) -> FusedClassifier:
    """``FusedClassifier`` from ``config.model``: the fused model when both (or more)
    modalities are set, else the one encoder of ``model.image`` / ``model.text``."""
    dtype = dtype_from_name(model_cfg.get("dtype", "float32"))
    kw = dict(num_classes=num_classes, head_hidden=head_hidden, dtype=dtype)
    image_cfg, text_cfg = model_cfg.get("image"), model_cfg.get("text")
    if (image_cfg is None) == (text_cfg is None) or model_cfg.get("features"):
        return FusedClassifier(fused=build_fused_model(model_cfg), **kw)
    impl = model_cfg.get("attention_impl") or None
    memory = dict(
        remat=model_cfg.get("remat", "none"), scan_layers=bool(model_cfg.get("scan_layers", False))
    )
    if image_cfg is not None:
        return FusedClassifier(image=build_image_encoder(image_cfg, dtype, impl, **memory), **kw)
    return FusedClassifier(text=build_text_encoder(text_cfg, dtype, impl, **memory), **kw)
