"""Host-side image transforms for training and eval: resize + center crop, random-resized crop
(the torchvision algorithm, reimplemented on NumPy + PIL), an optional Gaussian blur and an
optional horizontal flip.

``make_image_fn(data_cfg, train)`` builds the ``ImageFn`` (uint8 ``[H, W, 3]`` + a
per-record generator -> uint8 ``[size, size, 3]``) that the pipeline applies to every
record; it reads (all optional, with these defaults):

    data.image_size                          output side (required unless both are 'none')
    data.train_transform = 'none'            'none' | 'resize_center_crop' | 'random_resized_crop'
    data.eval_transform = 'none'             'none' | 'resize_center_crop'
    data.crop_scale = (0.08, 1.0)            random_resized_crop: area fraction range
    data.crop_ratio = (3 / 4, 4 / 3)         random_resized_crop: width / height range
    data.hflip = False                       training only; off by default because
                                             image-text captions say "left" / "right"
    data.blur_prob = 0.0                     training only: P(Gaussian blur) of each image,
    data.blur_sigma = (0.1, 2.0)             its radius drawn uniformly from this range
                                             (DINO's / BYOL's GaussianBlur: PIL's filter)

'none' keeps the image as decoded (the synthetic images already have the model's size);
with ``data.image_processor`` (a Hugging Face model directory) set, 'none' means that
processor's own resize + center crop. Resizing is PIL bicubic (antialiased when
shrinking). Randomness comes only from the passed generator, which the pipeline seeds
from the record's position: the same seed gives the same pixels, so resumed runs match.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
from PIL import Image

from mmjax.data.image_processing import HFImageProcessor
from mmjax.data.transforms import NORMALIZATIONS, ImageFn, image_processor

TRAIN_TRANSFORMS = ("none", "resize_center_crop", "random_resized_crop")
EVAL_TRANSFORMS = ("none", "resize_center_crop")
DEFAULT_CROP_SCALE = (0.08, 1.0)
DEFAULT_CROP_RATIO = (3 / 4, 4 / 3)
DEFAULT_BLUR_SIGMA = (0.1, 2.0)  # DINO's / BYOL's GaussianBlur radius range
CROP_TRIES = 10  # torchvision's RandomResizedCrop: tries before the central fallback

# (top, left, height, width) of a crop, in pixels.
Box = tuple[int, int, int, int]


def random_resized_crop_box(
    height: int,
    width: int,
    rng: np.random.Generator,
    scale: Sequence[float] = DEFAULT_CROP_SCALE,
    ratio: Sequence[float] = DEFAULT_CROP_RATIO,
) -> Box:
    """A random crop box of an ``height x width`` image, torchvision's algorithm.

    Up to ``CROP_TRIES`` times: area ~ U(scale) * image area, aspect (w / h) log-uniform
    in ``ratio``; the first box that fits is placed uniformly. Otherwise the central
    crop of the whole image, clamped to the ratio range. Returns ``(top, left, h, w)``.
    """
    area = height * width
    log_lo, log_hi = math.log(ratio[0]), math.log(ratio[1])
    for _ in range(CROP_TRIES):
        target_area = area * rng.uniform(scale[0], scale[1])
        aspect = math.exp(rng.uniform(log_lo, log_hi))
        w = int(round(math.sqrt(target_area * aspect)))
        h = int(round(math.sqrt(target_area / aspect)))
        if 0 < w <= width and 0 < h <= height:
            top = int(rng.integers(0, height - h + 1))
            left = int(rng.integers(0, width - w + 1))
            return top, left, h, w
    in_ratio = width / height
    if in_ratio < min(ratio):
        w, h = width, int(round(width / min(ratio)))
    elif in_ratio > max(ratio):
        h, w = height, int(round(height * max(ratio)))
    else:
        h, w = height, width
    return (height - h) // 2, (width - w) // 2, h, w


def resized_crop(image: np.ndarray, box: Box, size: int) -> np.ndarray:
    """uint8 ``[H, W, 3]`` -> its ``box`` resized (PIL bicubic) to uint8 ``[size, size, 3]``."""
    top, left, h, w = box
    img = Image.fromarray(np.asarray(image, np.uint8))
    img = img.crop((left, top, left + w, top + h))
    return np.asarray(img.resize((size, size), resample=Image.BICUBIC))


def resize_shorter_center_crop(image: np.ndarray, size: int) -> np.ndarray:
    """uint8 ``[H, W, 3]`` -> shorter side resized to ``size`` (PIL bicubic, the longer side
    ``int(size * long / short)``) then the central ``[size, size, 3]``: a Hugging Face CLIP
    image processor's resize + crop (``HFImageProcessor``), top/left offsets rounded down."""
    return HFImageProcessor(shortest_edge=size, crop=(size, size)).resize_crop(image)


def hflip(image: np.ndarray) -> np.ndarray:
    """uint8 ``[H, W, 3]`` mirrored left <-> right."""
    return np.ascontiguousarray(image[:, ::-1])


class ResizeCenterCrop:
    """``ImageFn``: ``resize_shorter_center_crop`` to ``size`` (deterministic)."""

    def __init__(self, size: int):
        self.size = size

    def __call__(self, image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        return resize_shorter_center_crop(image, self.size)

    def __repr__(self) -> str:
        return f"ResizeCenterCrop({self.size})"


class RandomResizedCrop:
    """``ImageFn``: ``random_resized_crop_box`` then a bicubic resize to ``[size, size, 3]``,
    then (if ``flip``) a horizontal flip with probability 1/2. Draws, in order, from ``rng``:
    the box, then the flip."""

    def __init__(
        self,
        size: int,
        scale: Sequence[float] = DEFAULT_CROP_SCALE,
        ratio: Sequence[float] = DEFAULT_CROP_RATIO,
        flip: bool = False,
    ):
        self.size, self.scale, self.ratio, self.flip = size, tuple(scale), tuple(ratio), flip

    def __call__(self, image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        box = random_resized_crop_box(image.shape[0], image.shape[1], rng, self.scale, self.ratio)
        out = resized_crop(image, box, self.size)
        return hflip(out) if self.flip and rng.random() < 0.5 else out

    def __repr__(self) -> str:
        return f"RandomResizedCrop({self.size}, {self.scale}, {self.ratio}, flip={self.flip})"


class RandomFlip:
    """``ImageFn``: ``first`` (may be ``None``) then a random horizontal flip (p = 1/2)."""

    def __init__(self, first: ImageFn | None):
        self.first = first

    def __call__(self, image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        out = image if self.first is None else self.first(image, rng)
        return hflip(out) if rng.random() < 0.5 else out


class RandomBlur:
    """``ImageFn``: ``first`` (may be ``None``) then, with probability ``prob``, PIL's Gaussian
    blur of a radius (sigma, in pixels) drawn uniformly from ``sigma`` (DINO's
    ``GaussianBlur``). Draws, in order, from ``rng``: the coin, then (if heads) the radius."""

    def __init__(self, first: ImageFn | None, prob: float, sigma: Sequence[float]):
        self.first, self.prob, self.sigma = first, prob, tuple(sigma)

    def __call__(self, image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        from PIL import ImageFilter

        out = image if self.first is None else self.first(image, rng)
        if rng.random() >= self.prob:
            return out
        radius = rng.uniform(*self.sigma)
        return np.asarray(Image.fromarray(out).filter(ImageFilter.GaussianBlur(radius)))

    def __repr__(self) -> str:
        return f"RandomBlur({self.first!r}, {self.prob}, {self.sigma})"


class _ProcessorCrop:
    """``ImageFn``: an ``HFImageProcessor``'s resize + center crop (deterministic)."""

    def __init__(self, proc: HFImageProcessor):
        self.proc = proc

    def __call__(self, image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        return self.proc.resize_crop(image)


def _range(data_cfg: Any, key: str, default: tuple[float, float]) -> tuple[float, float]:
    """``data.<key>`` as an increasing pair of positive floats; errors name the key."""
    value = data_cfg.get(key, default)
    try:
        lo, hi = (float(v) for v in value)
    except (TypeError, ValueError):
        raise ValueError(f"config.data.{key} must be a pair (low, high), got {value!r}") from None
    if not 0 < lo <= hi:
        raise ValueError(f"config.data.{key} must satisfy 0 < low <= high, got {value!r}")
    if key == "crop_scale" and hi > 1:
        raise ValueError(f"config.data.crop_scale is a fraction of the area (<= 1), got {value!r}")
    return lo, hi


def make_image_fn(data_cfg: Any, train: bool) -> ImageFn | None:
    """The host-side ``ImageFn`` for the train or eval split of ``data_cfg`` (see the module
    docstring for the keys), or ``None`` when images pass through unchanged."""
    key = "train_transform" if train else "eval_transform"
    name = data_cfg.get(key, "none") or "none"
    known = TRAIN_TRANSFORMS if train else EVAL_TRANSFORMS
    if name not in known:
        raise ValueError(f"config.data.{key}: unknown transform {name!r}; known: {known}")
    flip = bool(data_cfg.get("hflip", False)) and train
    blur = float(data_cfg.get("blur_prob", 0.0)) if train else 0.0
    if not 0.0 <= blur <= 1.0:
        raise ValueError(f"config.data.blur_prob must be in [0, 1], got {blur}")
    size = data_cfg.get("image_size")
    if name != "none" and (not isinstance(size, int) or size <= 0):
        raise ValueError(f"config.data.image_size must be a positive int for {key}={name!r}")
    if name == "random_resized_crop":
        scale = _range(data_cfg, "crop_scale", DEFAULT_CROP_SCALE)
        ratio = _range(data_cfg, "crop_ratio", DEFAULT_CROP_RATIO)
        fn: ImageFn | None = RandomResizedCrop(size, scale, ratio, flip)
        flip = False  # RandomResizedCrop flips on its own
    elif name == "resize_center_crop":
        fn = ResizeCenterCrop(size)
    else:  # 'none': the HF processor's resize + crop when configured, else pass-through
        proc = image_processor(data_cfg.get("image_processor"))
        fn = None if proc is None else _ProcessorCrop(proc)
    if flip:
        fn = RandomFlip(fn)
    if blur:
        fn = RandomBlur(fn, blur, _range(data_cfg, "blur_sigma", DEFAULT_BLUR_SIGMA))
    return fn


def normalize_host(images: np.ndarray, kind: str = "clip") -> np.ndarray:
    """uint8 ``[..., 3]`` -> float32 ``(x / 255 - mean) / std`` on the host, with the mean/std
    of ``NORMALIZATIONS[kind]`` (what ``normalize_images`` does on device; for loaders that
    ship float32)."""
    try:
        mean, std = NORMALIZATIONS[kind]
    except KeyError:
        known = sorted(NORMALIZATIONS)
        raise ValueError(f"unknown normalization {kind!r}; known: {known}") from None
    std = np.asarray(std, np.float32)
    # One multiply-add per pixel: x * (1 / (255 std)) - mean / std.
    out = np.multiply(images, (1.0 / (255.0 * std)).astype(np.float32), dtype=np.float32)
    out -= np.asarray(mean, np.float32) / std
    return out
