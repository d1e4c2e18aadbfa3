"""Per-record and on-device transforms shared by training and eval."""

from __future__ import annotations

import functools
import io
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


class BadRecord(ValueError):
    """A record that cannot be used: unreadable / missing image or empty caption."""


# Largest image decoded (pixels): a PNG whose header claims 50,000 x 50,000 pixels is a
# decompression bomb (gigabytes once decoded) and a bad record. ``data.max_image_pixels``
# sets it for a run (``mmjax.data.pipeline``).
MAX_IMAGE_PIXELS = 89_478_485  # PIL's default limit (a 9459 x 9459 image)


def set_max_image_pixels(data_cfg: Any) -> None:
    """Applies ``data_cfg.max_image_pixels`` (when set) to this process's decoding: one
    limit per process, as PIL's own ``Image.MAX_IMAGE_PIXELS`` is."""
    global MAX_IMAGE_PIXELS
    value = data_cfg.get("max_image_pixels") if hasattr(data_cfg, "get") else None
    if value:
        MAX_IMAGE_PIXELS = int(value)


def decode_image(data: bytes) -> np.ndarray:
    """Encoded image bytes (PNG, JPEG, ...) -> uint8 ``[H, W, 3]``; ``BadRecord`` if unreadable
    or larger than ``MAX_IMAGE_PIXELS`` (checked on the header, before decoding)."""
    import warnings

    import PIL.Image

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", PIL.Image.DecompressionBombWarning)
            img = PIL.Image.open(io.BytesIO(data))
    except (PIL.Image.DecompressionBombError, PIL.Image.DecompressionBombWarning) as e:
        raise BadRecord(f"image too large to decode ({e})") from None
    except (OSError, ValueError, SyntaxError) as e:
        raise BadRecord(f"unreadable image ({type(e).__name__}: {e})") from None
    width, height = img.size
    if width * height > MAX_IMAGE_PIXELS:
        img.close()
        raise BadRecord(
            f"image of {width} x {height} pixels is larger than config.data.max_image_pixels "
            f"({MAX_IMAGE_PIXELS})"
        )
    try:
        with img:
            img.load()
            if img.mode in ("I;16", "I;16B", "I;16L", "I"):  # 16-bit grey: keep the top byte
                return to_rgb_uint8(np.asarray(img))
            return np.asarray(img.convert("RGB"), np.uint8)
    except (OSError, ValueError, SyntaxError) as e:  # PIL's errors for corrupt data
        raise BadRecord(f"unreadable image ({type(e).__name__}: {e})") from None


def to_rgb_uint8(image: Any) -> np.ndarray:
    """An image as encoded bytes or an array (``[H, W]`` grey, ``[H, W, 1|3|4]``, uint8 or
    16-bit) -> uint8 ``[H, W, 3]``. Alpha is dropped; 16-bit values keep their top byte.
    Raises ``BadRecord`` for a missing or unreadable image."""
    if image is None:
        raise BadRecord("missing image")
    if isinstance(image, (bytes, bytearray, memoryview)):
        return decode_image(bytes(image))
    image = np.asarray(image)
    if image.dtype == np.uint16 or image.dtype == np.int32 and image.max(initial=0) > 255:
        image = (image.astype(np.uint32) >> 8).astype(np.uint8)
    elif image.dtype != np.uint8:
        image = image.astype(np.uint8)
    if image.ndim == 2:
        image = image[..., None]
    if image.ndim != 3 or image.shape[-1] not in (1, 3, 4) or 0 in image.shape:
        raise BadRecord(f"image of shape {image.shape} is not [H, W] or [H, W, 1|3|4]")
    if image.shape[-1] == 1:
        return np.repeat(image, 3, axis=-1)
    return image[..., :3] if image.shape[-1] == 4 else image


# Host-side image transform: uint8 ``[H, W, 3]`` and a per-record generator -> uint8
# ``[h, w, 3]``. Random ones (crops, flips) draw only from the generator, which the
# pipeline seeds from the record's position, so a resumed run sees the same pixels.
ImageFn = Callable[[np.ndarray, np.random.Generator], np.ndarray]

# Record -> model inputs, the contract every task's example follows:
# ``example(record, rng) -> {name: np.ndarray}``; raises ``BadRecord`` for an unusable record.
ExampleFn = Callable[[dict[str, Any], np.random.Generator], dict[str, np.ndarray]]


def record_image(
    record: dict[str, Any], image_fn: ImageFn | None, rng: np.random.Generator
) -> np.ndarray:
    """The record's ``image`` (array or encoded bytes) as uint8 ``[h, w, 3]`` after ``image_fn``."""
    image = to_rgb_uint8(record.get("image"))
    return image if image_fn is None else image_fn(image, rng)


def record_caption(record: dict[str, Any], key: str = "caption") -> str:
    """The record's non-empty text under ``key``; ``BadRecord`` when missing or empty."""
    caption = record.get(key)
    if not isinstance(caption, str) or not caption.strip():
        raise BadRecord(f"empty {key} {caption!r}")
    return caption


class ImageTextExample:
    """Record ``{'image', 'caption', ...}`` -> model inputs (an ``ExampleFn``).

    Output: ``image`` uint8 ``[H, W, 3]`` (normalized on device, which keeps
    host->device traffic at one byte per pixel), ``tokens`` int32 ``[length]``,
    ``padding_mask`` bool ``[length]``, ``label`` int32. ``image_fn`` resizes / crops /
    augments on the host (an ``ImageFn``). The record's ``image`` may be an array or
    encoded bytes (``to_rgb_uint8``); a record with no usable image or an empty caption
    raises ``BadRecord``.
    """

    def __init__(self, tokenizer: TextTokenizer, image_fn: ImageFn | None = None):
        self.tokenizer = tokenizer
        self.image_fn = image_fn

    def __call__(
        self, record: dict[str, Any], rng: np.random.Generator | None = None
    ) -> dict[str, np.ndarray]:
        caption = record_caption(record)
        image = record_image(record, self.image_fn, rng or np.random.default_rng(0))
        ids, mask = self.tokenizer([caption])  # over-long captions are truncated
        return {
            "image": image,
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
