"""Built-in synthetic image-text data: coloured shapes on noisy backgrounds.

Each record is generated on the fly from ``(seed, split, index)``; no files are
read or written, and the same index always gives the same record. An image
shows one shape (``SHAPES``) of one colour (``COLOURS``) and size (``SIZES``)
in one cell of a 3x3 grid (``POSITIONS``), with jittered position, size and
colour on a noisy background; its caption describes exactly those four
attributes ("a small red circle at the top left"), so a model can only match
images and captions by learning all of them.

The ``eval`` split enumerates distinct attribute combinations (through a fixed
permutation), so its captions are unique and retrieval has a single right
answer per query; the ``train`` split samples combinations at random.
Training and eval records come from disjoint random streams.
"""

from __future__ import annotations

import itertools
from typing import Any

import numpy as np

from mmjax.data.indexed_source import SPLITS, IndexedSource, pixel_grid

SHAPES = ("circle", "square", "triangle", "cross")
COLOURS = {
    "red": (220, 30, 30),
    "green": (30, 180, 40),
    "blue": (40, 70, 235),
    "yellow": (235, 225, 30),
    "purple": (150, 40, 205),
    "orange": (245, 140, 20),
    "cyan": (30, 215, 215),
    "white": (245, 245, 245),
}
SIZES = {"small": (0.07, 0.09), "large": (0.13, 0.16)}  # radius as a fraction of the side
POSITIONS = {
    "at the top left": (0, 0),
    "at the top": (0, 1),
    "at the top right": (0, 2),
    "on the left": (1, 0),
    "in the center": (1, 1),
    "on the right": (1, 2),
    "at the bottom left": (2, 0),
    "at the bottom": (2, 1),
    "at the bottom right": (2, 2),
}
TEMPLATES = (
    "a {size} {colour} {shape} {where}",
    "there is a {size} {colour} {shape} {where}",
    "{where} , a {size} {colour} {shape}",
)

# Questions about one record, by the attribute they ask for (VQA over the synthetic set).
# Each names enough of the other attributes to be unambiguous and leaves the answer out.
QUESTIONS = {
    "colour": "what colour is the {shape} ?",
    "shape": "what shape is {where} ?",
    "size": "how big is the {colour} {shape} ?",
    "where": "where is the {colour} {shape} ?",
}

COMBINATIONS: tuple[tuple[str, str, str, str], ...] = tuple(
    itertools.product(SHAPES, COLOURS, SIZES, POSITIONS)
)


def caption_words() -> list[str]:
    """Every word the caption grammar can produce (for building the tokenizer)."""
    words: set[str] = set()
    for template in TEMPLATES:
        words.update(template.replace("{", " ").replace("}", " ").split())
    words -= {"size", "colour", "shape", "where"}
    for part in (*SHAPES, *COLOURS, *SIZES, *POSITIONS):
        words.update(part.split())
    return sorted(words)


def question_words() -> list[str]:
    """Words of ``QUESTIONS`` that captions never use (appended to the tokenizer's vocabulary)."""
    words: set[str] = set()
    for template in QUESTIONS.values():
        words.update(template.replace("{", " ").replace("}", " ").split())
    words -= {"size", "colour", "shape", "where"} | set(caption_words())
    return sorted(words | {"colour", "shape", "where"})


def _shape_mask(shape: str, dy: np.ndarray, dx: np.ndarray, r: float) -> np.ndarray:
    """Boolean ``[H, W]`` mask of ``shape`` with radius ``r`` at offsets ``dy``, ``dx``."""
    if shape == "circle":
        return dy * dy + dx * dx <= r * r
    if shape == "square":
        s = 0.85 * r
        return (np.abs(dy) <= s) & (np.abs(dx) <= s)
    if shape == "triangle":  # pointing up: apex at -r, base at +0.8r
        return (dy >= -r) & (dy <= 0.8 * r) & (np.abs(dx) <= 0.62 * (dy + r))
    if shape == "cross":
        t = 0.35 * r
        return ((np.abs(dx) <= t) & (np.abs(dy) <= r)) | ((np.abs(dy) <= t) & (np.abs(dx) <= r))
    raise ValueError(f"unknown shape {shape!r}")


class SyntheticShapes(IndexedSource):
    """Random-access source of ``{'image': uint8 [size, size, 3], 'caption': str, 'label': int}``.

    ``label`` indexes ``COMBINATIONS`` (useful for classification and for
    checking retrieval). Works as a grain ``RandomAccessDataSource``. With
    ``corrupt_fraction > 0`` that fraction of records (chosen by index) is bad on purpose.
    """

    options = {"image_size": 64, "corrupt_fraction": 0.0}
    salt, order_salt, num_labels = None, 7919, len(COMBINATIONS)

    def prepare(self) -> None:
        if not 0.0 <= self.corrupt_fraction <= 1.0:
            raise ValueError(f"corrupt_fraction must be in [0, 1], got {self.corrupt_fraction}")
        if self.image_size < 16:
            raise ValueError(f"image_size must be >= 16, got {self.image_size}")
        self._yy, self._xx = pixel_grid(self.image_size)

    def __getitem__(self, index: int) -> dict[str, Any]:
        index = int(index)
        rng = self.record_rng(index)
        if self.corrupt_fraction and self.is_corrupt(index):
            return self._corrupt(index)
        label = self.label(index, rng)
        shape, colour, size, where = COMBINATIONS[label]
        n = self.image_size

        # float32 noise: generating it is most of the cost of a record.
        noise = rng.standard_normal((n, n, 3), dtype=np.float32)
        level = np.float32(rng.uniform(10, 110)) + rng.uniform(-20, 20, size=3).astype(np.float32)
        row, col = POSITIONS[where]
        cy = (row + 0.5 + rng.uniform(-0.15, 0.15)) * n / 3
        cx = (col + 0.5 + rng.uniform(-0.15, 0.15)) * n / 3
        radius = rng.uniform(*SIZES[size]) * n
        mask = _shape_mask(shape, self._yy - np.float32(cy), self._xx - np.float32(cx), radius)
        rgb = np.asarray(COLOURS[colour], np.float32) + rng.uniform(-20, 20, size=3).astype(
            np.float32
        )
        # A noisy background (random level and tint) and a less noisy shape.
        image = np.where(mask[..., None], rgb + 6.0 * noise, level + 14.0 * noise)
        template = TEMPLATES[int(rng.integers(len(TEMPLATES)))]
        caption = template.format(size=size, colour=colour, shape=shape, where=where)
        return {
            "image": np.clip(image, 0, 255).astype(np.uint8),
            "caption": caption,
            "label": label,
        }

    def is_corrupt(self, index: int) -> bool:
        """Whether record ``index`` is one of the ``corrupt_fraction`` bad ones (fault injection
        for tests of ``config.data.bad_records``; a stream apart from the records' own)."""
        if not self.corrupt_fraction:
            return False
        u = np.random.default_rng([self.seed, SPLITS[self.split], int(index), 104729]).random()
        return bool(u < self.corrupt_fraction)

    def _corrupt(self, index: int) -> dict[str, Any]:
        """A deterministic bad record, by ``index % 4``: a truncated PNG, bytes that are no
        image, a missing image, or an empty caption (with a good image)."""
        kind = index % 4
        record: dict[str, Any] = {"caption": "a small red circle in the center", "label": -1}
        if kind == 0:
            import io

            import PIL.Image

            buf = io.BytesIO()
            PIL.Image.new("RGB", (self.image_size, self.image_size), (9, 9, 9)).save(buf, "PNG")
            record["image"] = buf.getvalue()[: len(buf.getvalue()) // 2]
        elif kind == 1:
            record["image"] = b"not an image " + str(index).encode()
        elif kind == 2:
            record["image"] = None
        else:
            record["image"] = np.zeros((self.image_size, self.image_size, 3), np.uint8)
            record["caption"] = ""
        return record
