"""Writes metrics to the writers in ``config.train.writers`` (process 0 only).

``jsonl``: ``WORKDIR/metrics.jsonl``, one JSON object per ``write`` (``{'step': ...,
**metrics}``; what ``mmjax eval`` and ``mmjax plot`` read). ``tensorboard``: event files in
``WORKDIR/tensorboard``. ``wandb``: a Weights & Biases run (``mmjax.wandb_writer``, the
``[wandb]`` extra) that a restarted run resumes.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import jax

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
        self.path = Path(workdir) / "metrics.jsonl"
        self._jsonl = "jsonl" in writers
        self._tb = self._wandb = None
        if not self.enabled:
            return
        if "tensorboard" in writers:
            from tensorboardX import SummaryWriter

            self._tb = SummaryWriter(str(Path(workdir) / "tensorboard"))
        if "wandb" in writers:
            from mmjax.wandb_writer import WandbWriter

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
            with self.path.open("a") as f:
                f.write(json.dumps(row) + "\n")
        if self._tb is not None:
            self._tb.flush()
        if self._wandb is not None:
            self._wandb.write(int(step), {k: float(v) for k, v in metrics.items()})

    def close(self) -> None:
        if self._tb is not None:
            self._tb.close()
        if self._wandb is not None:
            self._wandb.close()
