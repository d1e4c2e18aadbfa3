"""Writes metrics to ``WORKDIR/metrics.jsonl`` and TensorBoard event files (process 0 only).

With a ``gs://`` workdir the event files are written to a local directory and copied to
``WORKDIR/tensorboard`` at each write (tensorboardX's own GCS writer is broken), and
``metrics.jsonl`` is rewritten with each row added (object stores cannot append)."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import jax

from mmjax import storage


class MetricWriter:
    """One JSON object per ``write`` (``{'step': ..., **metrics}``) plus TensorBoard scalars."""

    def __init__(self, workdir: str | Path):
        self.enabled = jax.process_index() == 0
        workdir = storage.as_path(workdir)
        self.path = workdir / "metrics.jsonl"
        self._tb = self._tb_dir = None
        if self.enabled:
            from tensorboardX import SummaryWriter

            self._tb_dir = storage.LocalMirror(workdir / "tensorboard")
            self._tb = SummaryWriter(str(self._tb_dir.local))

    def write(self, step: int, metrics: dict[str, Any]) -> None:
        if not self.enabled:
            return
        row = {"step": int(step)}
        for key, value in metrics.items():
            value = float(value)
            row[key] = value if math.isfinite(value) else str(value)
            self._tb.add_scalar(key, value, int(step))
        storage.append_text(self.path, json.dumps(row) + "\n")
        self._tb.flush()
        self._tb_dir.sync()

    def close(self) -> None:
        if self._tb is not None:
            self._tb.close()
            self._tb_dir.close()
