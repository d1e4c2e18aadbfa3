"""Writes metrics to ``WORKDIR/metrics.jsonl`` and TensorBoard event files (process 0 only)."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import jax


class MetricWriter:
    """One JSON object per ``write`` (``{'step': ..., **metrics}``) plus TensorBoard scalars."""

    def __init__(self, workdir: str | Path):
        self.enabled = jax.process_index() == 0
        self.path = Path(workdir) / "metrics.jsonl"
        self._tb = None
        if self.enabled:
            from tensorboardX import SummaryWriter

            self._tb = SummaryWriter(str(Path(workdir) / "tensorboard"))

    def write(self, step: int, metrics: dict[str, Any]) -> None:
        if not self.enabled:
            return
        row = {"step": int(step)}
        for key, value in metrics.items():
            value = float(value)
            row[key] = value if math.isfinite(value) else str(value)
            self._tb.add_scalar(key, value, int(step))
        with self.path.open("a") as f:
            f.write(json.dumps(row) + "\n")
        self._tb.flush()

    def close(self) -> None:
        if self._tb is not None:
            self._tb.close()
