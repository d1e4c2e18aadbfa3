"""Image preprocessing that matches a Hugging Face model's image processor.

Reads ``preprocessor_config.json`` (CLIP, SigLIP, ViT and ConvNext/ResNet processors)
and reproduces its resize / center crop (PIL, same filter and output-size rule) on the
host in uint8, and its rescale + mean/std normalization, so training, eval and
inference all feed the model what transformers would:

    proc = HFImageProcessor.from_pretrained(DIR)
    pixels = proc(image)              # [H, W, 3] float32 == HF pixel_values (NHWC)
    small = proc.resize_crop(image)   # uint8, in the data pipeline
    x = proc.normalize(batch_uint8)   # on device, in the task
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

CONFIG = "preprocessor_config.json"


def _size(value: Any) -> tuple[int | None, int | None, int | None]:
    """HF ``size`` -> ``(shortest_edge, height, width)``."""
    if isinstance(value, int):
        return None, value, value
    value = value or {}
    return value.get("shortest_edge"), value.get("height"), value.get("width")


@dataclass(frozen=True)
class HFImageProcessor:
    """Resize (shortest edge or to ``height x width``) -> center crop -> rescale -> normalize.

    ``crop_pct`` (ConvNext/ResNet processors) resizes the shortest edge to
    ``shortest_edge / crop_pct`` and crops ``shortest_edge`` when it is below 384.
    """

    shortest_edge: int | None = None
    height: int | None = None
    width: int | None = None
    resample: int = Image.BICUBIC
    crop: tuple[int, int] | None = None
    crop_pct: float | None = None
    rescale_factor: float = 1 / 255
    mean: tuple[float, ...] = (0.5, 0.5, 0.5)
    std: tuple[float, ...] = (0.5, 0.5, 0.5)

    @classmethod
    def from_pretrained(cls, path: str | Path) -> HFImageProcessor:
        """From a model directory (or the json file itself)."""
        path = Path(path)
        if path.is_dir():
            path = path / CONFIG
        if not path.is_file():
            raise FileNotFoundError(f"no image processor config at {path}")
        cfg = json.loads(path.read_text())
        return cls.from_dict(cfg, source=str(path))

    @classmethod
    def from_dict(cls, cfg: dict[str, Any], source: str = "image processor") -> HFImageProcessor:
        kind = cfg.get("image_processor_type", "")
        shortest, height, width = (
            _size(cfg.get("size")) if cfg.get("do_resize", True) else (None,) * 3
        )
        crop = None
        if cfg.get("do_center_crop", False) and kind != "ConvNextImageProcessor":
            _, ch, cw = _size(cfg.get("crop_size"))
            if ch is None or cw is None:
                raise ValueError(f"{source}: crop_size {cfg.get('crop_size')} has no height/width")
            crop = (ch, cw)
        rescale = cfg.get("rescale_factor", 1 / 255) if cfg.get("do_rescale", True) else 1.0
        mean, std = (0.0, 0.0, 0.0), (1.0, 1.0, 1.0)
        if cfg.get("do_normalize", True):
            mean, std = tuple(cfg["image_mean"]), tuple(cfg["image_std"])
        return cls(
            shortest_edge=shortest,
            height=height,
            width=width,
            resample=int(cfg.get("resample", Image.BICUBIC)),
            crop=crop,
            crop_pct=cfg.get("crop_pct") if kind == "ConvNextImageProcessor" else None,
            rescale_factor=float(rescale),
            mean=mean,
            std=std,
        )

    def output_size(self) -> tuple[int, int] | None:
        """``(height, width)`` of processed images, when fixed."""
        if self.crop:
            return self.crop
        if self.height and self.width:
            return self.height, self.width
        if self.shortest_edge and self.crop_pct:
            return self.shortest_edge, self.shortest_edge
        return None

    def _resize_shortest(self, img: Image.Image, edge: int) -> Image.Image:
        w, h = img.size
        short, long = (w, h) if w <= h else (h, w)
        new_long = int(edge * long / short)
        size = (edge, new_long) if w <= h else (new_long, edge)  # PIL: (width, height)
        return img.resize(size, resample=self.resample, reducing_gap=None)

    def resize_crop(self, image: np.ndarray) -> np.ndarray:
        """uint8 ``[H, W, 3]`` -> uint8 ``[h, w, 3]``, resized and center-cropped."""
        img = Image.fromarray(np.asarray(image, np.uint8)).convert("RGB")
        crop = self.crop
        if self.shortest_edge and self.crop_pct is not None and self.shortest_edge < 384:
            img = self._resize_shortest(img, int(self.shortest_edge / self.crop_pct))
            crop = (self.shortest_edge, self.shortest_edge)
        elif self.shortest_edge and self.crop_pct is not None:
            size = (self.shortest_edge, self.shortest_edge)
            img = img.resize(size, resample=self.resample, reducing_gap=None)
        elif self.shortest_edge:
            img = self._resize_shortest(img, self.shortest_edge)
        elif self.height and self.width:
            img = img.resize((self.width, self.height), resample=self.resample, reducing_gap=None)
        out = np.asarray(img)
        if crop:
            (h, w), (ch, cw) = out.shape[:2], crop
            if ch > h or cw > w:
                raise ValueError(f"crop {crop} is larger than the resized image {(h, w)}")
            top, left = (h - ch) // 2, (w - cw) // 2
            out = out[top : top + ch, left : left + cw]
        return out

    def normalize(self, images: Any) -> Any:
        """uint8 (numpy or jax) ``[..., 3]`` -> float32 ``(x * rescale - mean) / std``."""
        xp = np if isinstance(images, np.ndarray) else _jnp()
        x = images.astype(xp.float32) * xp.float32(self.rescale_factor)
        mean, std = xp.asarray(self.mean, xp.float32), xp.asarray(self.std, xp.float32)
        return (x - mean) / std

    def __call__(self, image: np.ndarray) -> np.ndarray:
        """uint8 ``[H, W, 3]`` -> float32 ``[h, w, 3]``: transformers' ``pixel_values``
        for this image, channels last."""
        return self.normalize(self.resize_crop(image))


def _jnp():
    import jax.numpy as jnp

    return jnp
