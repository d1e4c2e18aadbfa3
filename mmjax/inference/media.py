"""A two-tower run's video or audio tower at inference (``Pipeline.embed_videos`` /
``Pipeline.embed_audio``): inputs preprocessed by the run's own eval example.

``MediaTower`` pairs the two halves of the contrastive task's eval input path for a tower of
``config.model.image.kind`` ``'video'`` or ``'audio'``: on the host the eval
``MediaInputs`` (``mmjax.data.media``: frames sampled and resized, or log-mels padded to
``max_frames`` with a frame mask), on the device the task's ``tower_inputs`` (video
normalized as the run's images are; log-mels as they are, with their mask). Nothing here
re-implements either: a file embedded here meets the functions its eval split met.

Inputs are file paths (or encoded bytes), or arrays: a video as uint8
``[frames, H, W, 3]`` of any frame count and size (frames sampled evenly, then resized, as a
decoded file's are), an audio clip as a mono float waveform ``[samples]`` at the run's
``data.audio.sample_rate``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import jax
import numpy as np

from mmjax.data.media import MediaInputs, resize_frames, sample_frames

MediaLike = Any  # str | Path | bytes | np.ndarray (see the module docstring)
TowerInputs = Callable[[dict[str, jax.Array]], tuple[jax.Array, jax.Array | None]]


@dataclasses.dataclass(frozen=True)
class MediaTower:
    """``inputs``: the run's eval ``MediaInputs`` (``train=False``); ``tower_inputs``: its
    task's ``batch -> (tower input, frame mask or None)``."""

    inputs: MediaInputs
    tower_inputs: TowerInputs

    @property
    def kind(self) -> str:
        return self.inputs.kind

    def _record(self, value: MediaLike) -> dict[str, Any]:
        """The record ``MediaInputs`` reads for one input."""
        if isinstance(value, (str, Path)):
            path = Path(value)
            if not path.is_file():
                raise FileNotFoundError(f"no {self.kind} file {path}")
            return {self.kind: str(path)}
        if isinstance(value, bytes):
            return {self.kind: value}
        array = np.asarray(value)
        if self.kind == "video" and array.ndim == 4 and array.dtype == np.uint8:
            # an array of other frames / size: what a decoded file of that shape becomes
            array = resize_frames(
                sample_frames(array, self.inputs.num_frames), self.inputs.image_size
            )
        return {self.kind: array}

    def preprocess(self, values: Sequence[MediaLike]) -> dict[str, np.ndarray]:
        """The batch of ``values`` as the eval split's: ``{'video': uint8 [n, frames, size,
        size, 3]}`` or ``{'audio': float32 [n, max_frames, mels], 'audio_mask': bool
        [n, max_frames]}``; an unusable input is a ``ValueError`` naming its index."""
        rng = np.random.default_rng(0)  # eval examples draw nothing from it
        rows = []
        for i, value in enumerate(values):
            try:
                rows.append(self.inputs(self._record(value), rng))
            except (OSError, ValueError) as e:  # a BadRecord is a ValueError
                raise ValueError(f"{self.kind} {i} ({_describe(value)}): {e}") from e
        if rows:
            return {k: np.stack([row[k] for row in rows]) for k in rows[0]}
        if self.kind == "video":
            n, size = self.inputs.num_frames, self.inputs.image_size
            return {"video": np.zeros((0, n, size, size, 3), np.uint8)}
        frames, mels = self.inputs.max_frames, self.inputs.front.num_mels
        return {
            "audio": np.zeros((0, frames, mels), np.float32),
            "audio_mask": np.zeros((0, frames), np.bool_),
        }


def _describe(value: MediaLike) -> str:
    if isinstance(value, (str, Path)):
        return str(value)
    if isinstance(value, bytes):
        return f"{len(value)} bytes"
    return f"{type(value).__name__} {getattr(value, 'shape', '')}".strip()
