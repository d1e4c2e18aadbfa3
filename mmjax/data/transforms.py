"""Per-record and on-device transforms shared by training and eval."""

from __future__ import annotations

import functools
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from mmjax.data.tokenizer import TextTokenizer

# Per-channel mean/std on the 0..1 scale, by the name configs use.
NORMALIZATIONS = {
    "clip": ((0.48145466, 0.4578275, 0.40821073), (0.26862954, 0.26130258, 0.27577711)),
    "imagenet": ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),
    "siglip": ((0.5, 0.5, 0.5), (0.5, 0.5, 0.5)),
}


class ImageTextExample:
    """Record ``{'image', 'caption', ...}`` -> model inputs.

    Output: ``image`` uint8 ``[H, W, 3]`` (normalized on device, which keeps
    host->device traffic at one byte per pixel), ``tokens`` int32 ``[length]``,
    ``padding_mask`` bool ``[length]``, ``label`` int32. ``image_fn`` (uint8 -> uint8)
    resizes / crops on the host, e.g. ``HFImageProcessor.resize_crop``.
    """

    def __init__(
        self,
        tokenizer: TextTokenizer,
        image_fn: Callable[[np.ndarray], np.ndarray] | None = None,
    ):
        self.tokenizer = tokenizer
        self.image_fn = image_fn

    def __call__(self, record: dict[str, Any]) -> dict[str, np.ndarray]:
        ids, mask = self.tokenizer([record["caption"]])
        image = np.asarray(record["image"], np.uint8)
        return {
            "image": image if self.image_fn is None else self.image_fn(image),
            "tokens": ids[0],
            "padding_mask": mask[0],
            "label": np.int32(record.get("label", -1)),
        }


@functools.lru_cache(maxsize=8)
def image_processor(spec: str | None):
    """``''``/``None`` -> ``None``; else the ``HFImageProcessor`` of a Hugging Face model
    directory (or its ``preprocessor_config.json``)."""
    if not spec:
        return None
    from mmjax.data.image_processing import HFImageProcessor

    return HFImageProcessor.from_pretrained(spec)


def normalize_images(images: jax.Array, kind: str = "clip") -> jax.Array:
    """uint8 ``[batch, H, W, 3]`` -> fp32 normalized with the named mean/std, or with
    the rescale and mean/std of a Hugging Face model directory's image processor."""
    if kind not in NORMALIZATIONS and Path(kind).exists():
        return image_processor(kind).normalize(jnp.asarray(images))
    try:
        mean, std = NORMALIZATIONS[kind]
    except KeyError:
        raise ValueError(
            f"unknown normalization {kind!r}; known: {sorted(NORMALIZATIONS)} "
            "or a Hugging Face model directory"
        ) from None
    x = images.astype(jnp.float32) / 255.0
    return (x - jnp.asarray(mean, jnp.float32)) / jnp.asarray(std, jnp.float32)
