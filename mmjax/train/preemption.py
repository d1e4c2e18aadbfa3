"""Stop requests from SIGTERM / SIGINT that every process agrees on.

Cloud TPU and GPU VMs send SIGTERM before they reclaim a machine; Ctrl-C sends
SIGINT. Either one only sets a flag: the train loop finishes its current step,
writes a checkpoint, waits for it to commit and returns normally. A second
Ctrl-C exits at once (``KeyboardInterrupt``), but never at the cost of a checkpoint
already being written: while a save is started or waited for (``saving``) it is held
back until the save call returns, and whatever leaves the loop waits for the saves in
flight to commit (``finish``) before the process goes on to exit.

On a multi-process run a signal may reach some processes only, or reach them at
different steps, so ``should_stop`` all-gathers the flag (every ``sync_every``
steps) and every process stops at the same step.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Callable, Iterator
from typing import Any

import jax
import numpy as np
from jax.experimental import multihost_utils


class StopRequest:
    """Context manager that turns SIGTERM / SIGINT into a stop flag while it is active.

    Handlers are installed only in the main thread (elsewhere Python does not allow it;
    the flag can still be set with ``request``) and restored on exit.
    """

    def __init__(self, sync_every: int = 1, finish: Callable[[], None] | None = None):
        """``finish`` waits for the checkpoint saves in flight (``Checkpointer.wait``)."""
        self.sync_every = max(int(sync_every), 1)
        self.signal_name: str | None = None
        self.finish = finish
        self._previous: dict[int, Any] = {}
        self._holding = 0  # > 0: a save is in progress, a second Ctrl-C waits for it
        self._interrupted = False

    def __enter__(self) -> StopRequest:
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGTERM, signal.SIGINT):
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, exc_type: Any, *exc: Any) -> None:
        try:
            # Leaving on an error or a second Ctrl-C: the save in flight still commits (a
            # multi-process wait could hang on processes that did not fail, so not there).
            if exc_type is not None and self.finish is not None and jax.process_count() == 1:
                self._holding += 1
                self._say("waiting for the checkpoint being written to commit")
                try:
                    self.finish()
                except Exception:  # noqa: BLE001 - the error already leaving says more
                    pass
        finally:
            for sig, handler in self._previous.items():
                signal.signal(sig, handler)
            self._previous = {}

    @contextlib.contextmanager
    def saving(self) -> Iterator[None]:
        """Holds a second Ctrl-C back while a save is started or waited for; it takes
        effect (``KeyboardInterrupt``) when the block ends."""
        self._holding += 1
        try:
            yield
        finally:
            self._holding -= 1
        if self._interrupted and not self._holding:
            raise KeyboardInterrupt

    def _handle(self, signum: int, frame: Any) -> None:
        if signum == signal.SIGINT and self.signal_name is not None:
            if self._holding:
                if not self._interrupted:
                    self._say("Ctrl-C again: exiting once the checkpoint being written commits")
                self._interrupted = True
                return
            raise KeyboardInterrupt  # the second Ctrl-C: stop now, no new checkpoint
        self.request(signal.Signals(signum).name)

    @staticmethod
    def _say(text: str) -> None:
        if jax.process_index() == 0:
            print(f"\n{text}", flush=True)

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
