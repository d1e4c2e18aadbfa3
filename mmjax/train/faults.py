"""The train loop's bookkeeping of bad steps and bad records, and their policies.

- ``config.train.nonfinite``: a step whose loss or gradients are not finite keeps the
  old state inside the jitted step (``mmjax.train.loop.make_train_step``) and reports
  ``nonfinite = 1``. ``'skip_step'`` goes on and counts it (``nonfinite_skips`` in the
  log row: skipped steps since the previous row); ``'stop'`` stops the run at that step,
  before any later checkpoint is written, so the last checkpoint is a good state.
- ``config.data.bad_records='skip'``: each batch counts the bad records it replaced;
  the log row's ``data/skipped`` is the fraction of records read since the previous row
  that were bad, over all processes. More than ``config.data.max_bad_fraction`` of the
  records read since the run (re)started stops the run.
"""

from __future__ import annotations

from typing import Any

import jax
import numpy as np
from jax.experimental import multihost_utils

POLICIES = ("stop", "skip_step")


class NonFiniteError(FloatingPointError):
    """A non-finite loss or gradient under ``config.train.nonfinite='stop'``."""


class TooManyBadRecords(ValueError):
    """More bad records than ``config.data.max_bad_fraction`` allows."""


class FaultMonitor:
    """Collects each step's ``nonfinite`` flag (a device scalar, fetched only at ``check``)
    and this process's bad-record counts."""

    def __init__(self, nonfinite: str = "stop", max_bad_fraction: float = 1.0):
        if nonfinite not in POLICIES:
            raise ValueError(f"config.train.nonfinite must be one of {POLICIES}, got {nonfinite!r}")
        self.policy = nonfinite
        self.max_bad_fraction = float(max_bad_fraction)
        self._flags: list[tuple[int, Any]] = []
        self._skips = 0
        self._bad = np.zeros(2, np.int64)  # [bad, read] since the last row, this process
        self._total = np.zeros(2, np.int64)  # [bad, read] since start, all processes

    def add(self, step: int, metrics: dict[str, Any], skipped: np.ndarray | None) -> None:
        """Records step ``step``: its metrics (with ``nonfinite``) and the batch's ``skipped``."""
        self._flags.append((step, metrics["nonfinite"]))
        if skipped is not None:
            bad = int(np.sum(skipped))
            self._bad += (bad, int(np.size(skipped)) + bad)

    def check(self, checkpointer: Any) -> None:
        """Fetches the pending flags; under ``'stop'`` waits for ``checkpointer``'s saves in
        flight to commit and raises ``NonFiniteError``."""
        if not self._flags:
            return
        flags = jax.device_get([f for _, f in self._flags])
        bad_steps = [s for (s, _), f in zip(self._flags, flags, strict=True) if int(f)]
        self._flags = []
        if bad_steps and self.policy == "stop":
            checkpointer.wait()
            last_checkpoint = checkpointer.latest_step()
            where = (
                f"the last checkpoint (step {last_checkpoint}) is intact"
                if last_checkpoint is not None
                else "no checkpoint was written"
            )
            raise NonFiniteError(
                f"non-finite loss or gradients at step {bad_steps[0]}; stopped there and "
                f"saved nothing after it ({where}). config.train.nonfinite='skip_step' skips "
                "such steps instead"
            )
        self._skips += len(bad_steps)

    def row(self) -> dict[str, float]:
        """``nonfinite_skips`` and ``data/skipped`` since the previous row (call ``check``
        first, on every process at the same steps); raises ``TooManyBadRecords``."""
        counts = self._bad
        if jax.process_count() > 1:
            counts = np.asarray(multihost_utils.process_allgather(counts)).sum(axis=0)
        self._total += counts
        row = {
            "nonfinite_skips": float(self._skips),
            "data/skipped": float(counts[0] / counts[1]) if counts[1] else 0.0,
        }
        self._skips, self._bad = 0, np.zeros(2, np.int64)
        bad, read = self._total
        if read and bad > self.max_bad_fraction * read:
            raise TooManyBadRecords(
                f"{bad} of the {read} records read so far were bad ({bad / read:.1%}), more "
                f"than config.data.max_bad_fraction ({self.max_bad_fraction:.1%})"
            )
        return row
