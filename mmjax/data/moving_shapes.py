"""Built-in video-text data: a coloured shape moving across a noisy background.

Each clip of ``num_frames`` frames shows one shape (``synthetic.SHAPES``) of one colour
(``synthetic.COLOURS``) moving in one of eight directions (``DIRECTIONS``) from a random
start, so no single frame tells the direction: only the change between frames does.
Captions name the three attributes ("a red circle moves to the left"); 4 x 8 x 8 = 256
distinct captions. Records are generated from ``(seed, split, index)`` like
``synthetic.SyntheticShapes``: the ``eval`` split enumerates every combination once
(in a fixed permuted order), ``train`` draws them at random from another stream.

A record is ``{'video': uint8 [frames, size, size, 3], 'caption', 'label', 'question',
'answers'}``; ``question`` / ``answers`` are for video QA ("which way does the red circle
move ?" -> ``[direction]``, answers from ``DIRECTIONS``).
"""

from __future__ import annotations

import itertools
from typing import Any

import numpy as np

from mmjax.data.indexed_source import IndexedSource, pixel_grid
from mmjax.data.synthetic import COLOURS, SHAPES, _shape_mask

# direction -> (dy, dx) unit step (image rows grow downwards)
DIRECTIONS = {
    "to the left": (0, -1),
    "to the right": (0, 1),
    "up": (-1, 0),
    "down": (1, 0),
    "up and to the left": (-1, -1),
    "up and to the right": (-1, 1),
    "down and to the left": (1, -1),
    "down and to the right": (1, 1),
}
COMBINATIONS: tuple[tuple[str, str, str], ...] = tuple(
    itertools.product(SHAPES, COLOURS, DIRECTIONS)
)
CAPTION = "a {colour} {shape} moves {direction}"
QUESTION = "which way does the {colour} {shape} move ?"


def caption_words() -> list[str]:
    """Every word captions and questions use (for a word-level tokenizer)."""
    words = set((CAPTION + " " + QUESTION).replace("{", " ").replace("}", " ").split())
    words -= {"colour", "shape", "direction"}
    for part in (*SHAPES, *COLOURS, *DIRECTIONS):
        words.update(part.split())
    return sorted(words)


class MovingShapes(IndexedSource):
    """Random-access source of moving-shape clips (a grain ``RandomAccessDataSource``)."""

    options = {"image_size": 32, "num_frames": 8}
    salt, order_salt, num_labels = 31, 7907, len(COMBINATIONS)

    def prepare(self) -> None:
        if self.image_size < 16 or self.num_frames < 2:
            raise ValueError(
                f"need image_size >= 16 and num_frames >= 2, got {self.image_size}, "
                f"{self.num_frames}"
            )
        self._yy, self._xx = pixel_grid(self.image_size)

    def __getitem__(self, index: int) -> dict[str, Any]:
        index = int(index)
        rng = self.record_rng(index)
        label = self.label(index, rng)
        shape, colour, direction = COMBINATIONS[label]
        n, t = self.image_size, self.num_frames
        radius = rng.uniform(0.12, 0.16) * n
        speed = rng.uniform(0.4, 0.6) * (n - 2 * radius) / (t - 1)  # px per frame
        dy, dx = DIRECTIONS[direction]
        norm = np.hypot(dy, dx)
        step = np.array([dy, dx]) / norm * speed
        travel = step * (t - 1)
        # a start from which the whole path stays inside the frame
        lo = radius + np.maximum(0, -travel)
        hi = n - radius - np.maximum(0, travel)
        start = rng.uniform(lo, np.maximum(hi, lo))
        rgb = np.asarray(COLOURS[colour], np.float32) + rng.uniform(-20, 20, 3).astype(np.float32)
        level = np.float32(rng.uniform(10, 110)) + rng.uniform(-20, 20, 3).astype(np.float32)
        noise = rng.standard_normal((t, n, n, 3), dtype=np.float32)
        frames = np.empty((t, n, n, 3), np.uint8)
        for i in range(t):
            cy, cx = start + i * step
            mask = _shape_mask(shape, self._yy - np.float32(cy), self._xx - np.float32(cx), radius)
            frame = np.where(mask[..., None], rgb + 6.0 * noise[i], level + 14.0 * noise[i])
            frames[i] = np.clip(frame, 0, 255).astype(np.uint8)
        attrs = dict(shape=shape, colour=colour, direction=direction)
        return {
            "video": frames,
            "caption": CAPTION.format(**attrs),
            "label": label,
            "question": QUESTION.format(**attrs),
            "answers": [direction],
        }
