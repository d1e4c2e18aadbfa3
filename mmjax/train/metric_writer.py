"""Writes metrics to the writers in ``config.train.writers`` (process 0 only).

``jsonl``: ``WORKDIR/metrics.jsonl``, one JSON object per ``write`` (``{'step': ...,
**metrics}``; what ``mmjax eval`` and ``mmjax plot`` read). ``tensorboard``: event files in
``WORKDIR/tensorboard``. ``wandb``: a Weights & Biases run (``mmjax.train.wandb_writer``, the
``[wandb]`` extra) that a restarted run resumes.

With a ``gs://`` workdir the event files are written to a local directory and copied to
``WORKDIR/tensorboard`` at each write (tensorboardX's own GCS writer is broken), and
``metrics.jsonl`` is rewritten with each row added (object stores cannot append).
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import jax

from mmjax import storage

WRITERS = ("jsonl", "tensorboard", "wandb")
DEFAULT_WRITERS = ("jsonl", "tensorboard")


class MetricWriter:
    """Fans each ``write(step, metrics)`` out to the configured writers."""

    def __init__(
        self,
        workdir: str | Path,
        writers: Sequence[str] = DEFAULT_WRITERS,
        config: dict[str, Any] | None = None,
        wandb_project: str = "",
    ):
        writers = tuple(writers)
        unknown = sorted(set(writers) - set(WRITERS))
        if unknown:
            raise ValueError(f"config.train.writers: unknown {unknown}; known: {WRITERS}")
        self.enabled = jax.process_index() == 0
        workdir = storage.as_path(workdir)
        self.path = workdir / "metrics.jsonl"
        self._jsonl = "jsonl" in writers
        self._tb = self._tb_dir = self._wandb = None
        if not self.enabled:
            return
        if "tensorboard" in writers:
            from tensorboardX import SummaryWriter

            self._tb_dir = storage.LocalMirror(workdir / "tensorboard")
            self._tb = SummaryWriter(str(self._tb_dir.local))
        if "wandb" in writers:
            from mmjax.train.wandb_writer import WandbWriter

            self._wandb = WandbWriter(workdir, config or {}, wandb_project)

    def write(self, step: int, metrics: dict[str, Any]) -> None:
        if not self.enabled:
            return
        row = {"step": int(step)}
        for key, value in metrics.items():
            value = float(value)
            row[key] = value if math.isfinite(value) else str(value)
            if self._tb is not None:
                self._tb.add_scalar(key, value, int(step))
        if self._jsonl:
            storage.append_text(self.path, json.dumps(row) + "\n")
        if self._tb is not None:
            self._tb.flush()
            self._tb_dir.sync()
        if self._wandb is not None:
            self._wandb.write(int(step), {k: float(v) for k, v in metrics.items()})

    def write_image(self, step: int, tag: str, image: Any) -> None:
        """One uint8 ``[H, W, 3]`` image (a sample grid) to TensorBoard as ``tag`` at
        ``step``; the other writers take scalars only."""
        if not self.enabled or self._tb is None:
            return
        self._tb.add_image(tag, image, int(step), dataformats="HWC")
        self._tb.flush()
        self._tb_dir.sync()

    def close(self) -> None:
        if self._tb is not None:
            self._tb.close()
            self._tb_dir.close()
        if self._wandb is not None:
            self._wandb.close()
