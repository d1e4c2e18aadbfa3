"""One run per workdir: an exclusive ``fcntl.flock`` on ``WORKDIR/.mmjax.lock``.

Two runs on one workdir would delete each other's in-progress checkpoints and mix their
``metrics.jsonl``; the second run therefore stops before it writes anything, naming the
holder (PID, host, start time, written into the lock file). The kernel drops the lock
when the holder exits, also after ``kill -9``, so a stale lock file never blocks a run.

A workdir with a URI scheme (``gs://...``) has no local file to lock: the run goes on
without a lock and says so once (a lease object for such workdirs is future work).
On a multi-process run, process 0 takes the lock and every process learns the outcome.
"""

from __future__ import annotations

import datetime
import fcntl
import json
import logging
import os
import socket
from typing import Any

import jax
import numpy as np
from jax.experimental import multihost_utils

LOCK_NAME = ".mmjax.lock"


class WorkdirError(RuntimeError):
    """A workdir that a run cannot use as it is; the message names the path."""


class WorkdirLocked(WorkdirError):
    """Another run holds the workdir's lock; the message names it."""


def check_layout(workdir: Any) -> None:
    """A run's directories (``checkpoints``, ``best``) must be directories, its files
    (``config.json``, ``metrics.jsonl``) files: orbax hangs on a ``checkpoints`` file."""
    if is_uri(workdir):
        return
    root = os.fspath(workdir)
    for name, want_dir in (
        ("checkpoints", True),
        ("best", True),
        ("config.json", False),
        ("metrics.jsonl", False),
    ):
        path = os.path.join(root, name)
        if os.path.exists(path) and os.path.isdir(path) != want_dir:
            kind = "a directory" if want_dir else "a file"
            raise WorkdirError(f"{path} must be {kind}; move it away or pass another --workdir")


def is_uri(path: Any) -> bool:
    """Whether ``path`` (str, ``pathlib.Path`` or ``epath.Path``) names a remote location."""
    return "://" in str(path)


class WorkdirLock:
    """Context manager holding the workdir's lock while a run uses it."""

    def __init__(self, workdir: Any):
        self.workdir = workdir
        self._fd: int | None = None

    def __enter__(self) -> WorkdirLock:
        error = ""
        if jax.process_index() == 0:
            error = self._acquire()
        if jax.process_count() > 1:  # every process stops if process 0 could not lock
            failed = multihost_utils.broadcast_one_to_all(np.int32(bool(error)))
            if int(failed) and not error:
                error = f"process 0 could not lock workdir {os.fspath(self.workdir)}"
        if error:
            raise WorkdirLocked(error)
        return self

    def _acquire(self) -> str:
        """Takes the lock; returns ``''`` or the reason it is held."""
        if is_uri(self.workdir):
            logging.warning(
                "workdir %s is not a local path: no lock is taken, so make sure no other run "
                "uses it",
                self.workdir,
            )
            return ""
        path = os.path.join(os.fspath(self.workdir), LOCK_NAME)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _read_holder(fd)
            os.close(fd)
            return (
                f"workdir {os.fspath(self.workdir)} is in use by another run ({holder}); "
                "wait for it to end, stop it, or pass another --workdir"
            )
        os.ftruncate(fd, 0)
        info = {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "started": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        }
        os.write(fd, (json.dumps(info) + "\n").encode())
        self._fd = fd
        return ""

    def __exit__(self, *exc: Any) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None


def _read_holder(fd: int) -> str:
    """``'PID 123 on host h since 2026-...'`` from the lock file (or what it holds)."""
    raw = os.pread(fd, 4096, 0).decode("utf-8", errors="replace")
    try:
        info = json.loads(raw)
        return f"PID {info['pid']} on host {info['host']} since {info['started']}"
    except (ValueError, KeyError, TypeError):
        return "holder unknown"
