"""The registries of module kinds a config names (``kind='vit'``, ``kind='gated'``, ...).

Each kind is a module class with one ``spec`` field (its frozen dataclass spec,
``models/spec.py``; ``SpecModule`` sets ``Spec`` from its annotation), registered where
it is defined::

    @register_image_encoder("vit")
    class VisionTransformer(SpecModule):
        spec: ViTSpec

Builders look a kind up here (``IMAGE_ENCODERS.get(kind, key=...)``; an unknown kind is a
``ConfigError`` listing the registered ones) and never branch on kind names.

- image encoders (``config.model.image.kind``, default ``'vit'``; also
  ``config.model.features.<name>.kind``, default ``'sequence'``): take ``(inputs[, mask],
  deterministic=)`` and return ``{'tokens', 'pooled'[, 'mask']}``; class attributes
  ``takes_mask`` (a ``[batch, seq]`` input mask as the second argument) and
  ``grid_tokens`` (tokens are a ``[batch, h, w, dim]`` map) say how to call and read them.
- text encoders (``config.model.text.kind``): ``(tokens, padding_mask, deterministic=)``.
- fusion kinds (``config.model.fusion.kind``): ``fuse(modalities: dict[str, Tokens],
  deterministic=) -> dict`` with at least ``'pooled'`` (see ``models/fusion/common.py``).
"""

from __future__ import annotations

from mmjax.registry import Registry

IMAGE_ENCODERS: Registry[type] = Registry("image encoder kind")
TEXT_ENCODERS: Registry[type] = Registry("text encoder kind")
FUSIONS: Registry[type] = Registry("fusion kind")

register_image_encoder = IMAGE_ENCODERS.register
register_text_encoder = TEXT_ENCODERS.register
register_fusion = FUSIONS.register
