"""Modality encoders from config sections, and the one way to call an image-like encoder.

``build_image_encoder(config.model.image, ...)`` / ``build_text_encoder(config.model.text,
...)`` look the section's ``kind`` up in ``models/kinds.py`` and build the registered
module from its spec (``spec_from_config``); the section's other keys are the spec's
fields. ``encode_tokens`` runs any registered image encoder (ViT, ResNet, video, audio,
feature sequences) and returns ``Tokens`` (``[batch, seq, dim]`` tokens, a mask and the
pooled vector), reading the encoder's ``takes_mask`` / ``grid_tokens`` class attributes.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

# Imported for their registrations (each module registers its kinds where it is defined).
from mmjax.models import audio, resnet, sequence, text, video, vision  # noqa: F401
from mmjax.models.kinds import IMAGE_ENCODERS, TEXT_ENCODERS
from mmjax.models.spec import spec_from_config


def build_encoder(
    section: Mapping[str, Any], key: str, default_kind: str, **runtime: Any
) -> nn.Module:
    """The image-like encoder ``section['kind']`` (``default_kind`` when absent) of
    ``IMAGE_ENCODERS``, built from the section (``key`` names it in errors) and the
    model-wide ``runtime`` fields (``spec.runtime_fields``)."""
    kind = section.get("kind", default_kind)
    cls = IMAGE_ENCODERS.get(kind, key=f"{key}.kind")
    return cls(spec_from_config(cls.Spec, section, key, ("kind",), **runtime))


def build_image_encoder(
    cfg: Any, dtype: Any, attention_impl: str | None, **memory: Any
) -> nn.Module:
    """The ``config.model.image`` tower (``kind``: ``'vit'`` by default, ``'resnet'``,
    ``'video'``, ``'audio'`` or any registered kind); ``memory``: ``remat`` /
    ``scan_layers`` of its transformer."""
    runtime = dict(dtype=dtype, attention_impl=attention_impl, **memory)
    return build_encoder(cfg, "config.model.image", "vit", **runtime)


def build_text_encoder(
    cfg: Any, dtype: Any, attention_impl: str | None, **memory: Any
) -> nn.Module:
    """The ``config.model.text`` tower (``kind``: ``'clip'``, ``'bert'`` or any registered
    kind); ``memory``: ``remat`` / ``scan_layers`` of its transformer."""
    cls = TEXT_ENCODERS.get(cfg.get("kind"), key="config.model.text.kind")
    runtime = dict(dtype=dtype, attention_impl=attention_impl, **memory)
    return cls(spec_from_config(cls.Spec, cfg, "config.model.text", ("kind",), **runtime))


def encode_tokens(
    encoder: nn.Module, inputs: jax.Array, mask: jax.Array | None, deterministic: bool
) -> dict[str, jax.Array]:
    """``encoder`` on ``inputs`` (and ``mask`` bool ``[batch, seq]`` when it takes one) ->
    ``{'tokens': [batch, seq, dim], 'mask': bool [batch, seq], 'pooled': [batch, dim]}``:
    a ``grid_tokens`` feature map ``[batch, h, w, dim]`` is flattened row-major; the mask
    is the encoder's own (audio: its patch mask), else the input mask for a mask-taking
    encoder, else all real."""
    if encoder.takes_mask:
        if mask is None:
            raise ValueError(f"{type(encoder).__name__} needs an input mask [batch, seq]")
        out = encoder(inputs, mask, deterministic=deterministic)
    else:
        out = encoder(inputs, deterministic=deterministic)
    tokens = out["tokens"]
    if encoder.grid_tokens:
        tokens = tokens.reshape(tokens.shape[0], -1, tokens.shape[-1])
    if "mask" in out:
        mask = out["mask"]
    elif not encoder.takes_mask:
        mask = jnp.ones(tokens.shape[:2], jnp.bool_)
    return {"tokens": tokens, "mask": mask, "pooled": out["pooled"]}
