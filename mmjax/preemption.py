"""Stop requests from SIGTERM / SIGINT that every process agrees on.

Cloud TPU and GPU VMs send SIGTERM before they reclaim a machine; Ctrl-C sends
SIGINT. Either one only sets a flag: the train loop finishes its current step,
writes a checkpoint, waits for it to commit and returns normally. A second
Ctrl-C exits at once (``KeyboardInterrupt``).

On a multi-process run a signal may reach some processes only, or reach them at
different steps, so ``should_stop`` all-gathers the flag (every ``sync_every``
steps) and every process stops at the same step.
"""

from __future__ import annotations

import signal
import threading
from typing import Any

import jax
import numpy as np
from jax.experimental import multihost_utils


class StopRequest:
    """Context manager that turns SIGTERM / SIGINT into a stop flag while it is active.

    Handlers are installed only in the main thread (elsewhere Python does not allow it;
    the flag can still be set with ``request``) and restored on exit.
    """

    def __init__(self, sync_every: int = 1):
        self.sync_every = max(int(sync_every), 1)
        self.signal_name: str | None = None
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> StopRequest:
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGTERM, signal.SIGINT):
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc: Any) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous = {}

    def _handle(self, signum: int, frame: Any) -> None:
        if signum == signal.SIGINT and self.signal_name is not None:
            raise KeyboardInterrupt  # the second Ctrl-C: stop now, no checkpoint
        self.request(signal.Signals(signum).name)

    def request(self, reason: str = "request") -> None:
        """Asks the loop to stop after the current step (what the signal handlers call)."""
        if self.signal_name is None:
            self.signal_name = reason
            if jax.process_index() == 0:
                print(f"\n{reason}: stopping after this step and saving a checkpoint", flush=True)

    @property
    def requested(self) -> bool:
        """Whether this process was asked to stop."""
        return self.signal_name is not None

    def should_stop(self, step: int) -> bool:
        """Whether to stop after ``step``: the same answer on every process (call it at every
        step on every process; the flag is exchanged on steps divisible by ``sync_every``)."""
        if jax.process_count() == 1:
            return self.requested
        if step % self.sync_every:
            return False
        flags = multihost_utils.process_allgather(np.asarray(self.requested, np.int32))
        return bool(np.asarray(flags).any())
