"""The ``mmjax`` command's errors: one ``mmjax: error: ...`` line, a distinct exit code per
kind, and the traceback only with ``--debug`` or ``MMJAX_DEBUG=1``.

    code  kind                                   raised as
    1     internal error (a bug: please report)  anything not below
    2     bad config, option or usage            ConfigError, argparse
    3     workdir in use or unusable             WorkdirLocked, WorkdirError
    4     checkpoint cannot be resumed           ResumeError
    5     bad data (source, records)             SourceError, BadRecordError, TooManyBadRecords
    6     non-finite loss or gradients           NonFiniteError
    7     Hugging Face model / weight files      HFLoadError, WeightFileError, ConfigMapError
    8     devices / mesh do not fit the config   MeshError
    9     a checkpoint save failed               CheckpointSaveError
    10    a file cannot be read or written       OSError (missing file, disk full, ...)
    130   interrupted (a second Ctrl-C)          KeyboardInterrupt
    143   SIGTERM before the first step          StartupTerminated

Kinds are matched by class name along the exception's MRO, so this module imports none
of the (heavy) modules that define them and ``mmjax --help`` stays fast.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import traceback
from collections.abc import Callable
from typing import Any

INTERNAL = 1
INTERRUPTED = 130
TERMINATED = 143
MAX_MESSAGE = 2000  # characters of one error line (orbax errors can run to pages)

# (class name, exit code, hint or '')
KINDS: tuple[tuple[str, int, str], ...] = (
    ("ConfigError", 2, ""),
    ("WorkdirLocked", 3, ""),
    ("WorkdirError", 3, ""),
    ("ResumeError", 4, ""),
    ("SourceError", 5, ""),
    ("BadRecordError", 5, ""),
    ("TooManyBadRecords", 5, "config.data.max_bad_fraction sets how many bad records are allowed"),
    ("NonFiniteError", 6, ""),
    ("HFLoadError", 7, ""),
    ("WeightFileError", 7, ""),
    ("ConfigMapError", 7, ""),
    ("MeshError", 8, ""),
    ("CheckpointSaveError", 9, ""),
    ("OSError", 10, ""),
)


class StartupTerminated(BaseException):
    """SIGTERM arrived before the train loop (which saves on SIGTERM) was running.

    A ``BaseException`` so that no ``except Exception`` on the way swallows it."""


def classify(error: BaseException) -> tuple[int, str]:
    """``(exit code, hint)`` of ``error``'s kind; ``(1, ...)`` for an unknown one."""
    names = [cls.__name__ for cls in type(error).__mro__]
    for name, code, hint in KINDS:
        if name in names:
            return code, hint
    return INTERNAL, ""


def one_line(error: BaseException) -> str:
    """The message on one line; unknown kinds are prefixed with their class name."""
    text = " ".join(str(error).split()) or type(error).__name__
    if classify(error)[0] == INTERNAL:
        text = f"{type(error).__name__}: {text}"
    return text if len(text) <= MAX_MESSAGE else text[: MAX_MESSAGE - 3] + "..."


def debug_requested(argv: list[str]) -> tuple[bool, list[str]]:
    """Whether ``--debug`` is in ``argv`` (removed) or ``MMJAX_DEBUG`` is set."""
    env = os.environ.get("MMJAX_DEBUG", "").lower() not in ("", "0", "false", "no")
    return env or "--debug" in argv, [a for a in argv if a != "--debug"]


class _NoLibraryTracebacks(logging.Filter):
    """Keeps the one line of a library's error log record and drops its traceback (orbax
    logs each failed background save with ``exc_info``: a thousand lines per failure)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.exc_info and "site-packages" in (record.pathname or ""):
            record.exc_info, record.exc_text = None, None
        return True


def _startup_sigterm(signum: int, frame: Any) -> None:
    raise StartupTerminated


def run_command(command: Callable[[], int], debug: bool = False) -> int:
    """Runs ``command`` (a CLI subcommand) and turns what escapes it into one error line
    on stderr and its kind's exit code.

    SIGTERM before the train loop takes over the signal (``mmjax.train.preemption``) ends the
    command cleanly with exit code 143; the loop itself saves a checkpoint and exits 0.
    """
    if not debug:
        logging.getLogger("absl").addFilter(_NoLibraryTracebacks())
    in_main = signal.getsignal(signal.SIGTERM) is signal.SIG_DFL
    if in_main:
        try:
            signal.signal(signal.SIGTERM, _startup_sigterm)
        except ValueError:  # not the main thread
            in_main = False
    try:
        return command()
    except SystemExit:
        raise
    except StartupTerminated:
        print("mmjax: stopped by SIGTERM before training started; nothing to save", file=sys.stderr)
        return TERMINATED
    except KeyboardInterrupt:
        if debug:
            traceback.print_exc()
        print("mmjax: interrupted", file=sys.stderr)
        return INTERRUPTED
    except Exception as e:  # noqa: BLE001 - the CLI's one place that reports any error
        code, hint = classify(e)
        if debug:
            traceback.print_exc()
        print(f"mmjax: error: {one_line(e)}", file=sys.stderr)
        if hint:
            print(f"mmjax: hint: {hint}", file=sys.stderr)
        if code == INTERNAL and not debug:
            print(
                "mmjax: this looks like a bug in mmjax; run again with --debug (or "
                "MMJAX_DEBUG=1) for the traceback",
                file=sys.stderr,
            )
        return code
    finally:
        if in_main:
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
