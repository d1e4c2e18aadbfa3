"""Paths a user gives: local ones stay ``pathlib.Path``; ``gs://`` (any ``scheme://``) ones
become ``etils.epath.Path``, which keeps the URI intact (``pathlib.Path('gs://b/x')`` would
be a local folder ``gs:/b/x``) and reads and writes through fsspec (``gcsfs`` for ``gs://``:
``pip install 'mmjax[gcs]'``). Orbax checkpoints go to the same URIs through tensorstore.

``STORAGE_EMULATOR_HOST=http://127.0.0.1:PORT`` points every ``gs://`` access at a GCS
emulator: gcsfs reads that variable itself, and ``configure_emulator`` sets tensorstore's
``TENSORSTORE_GCS_HTTP_URL`` from it (once, before the first remote path is used).
Object stores cannot append: ``append_text`` rewrites the object, and TensorBoard event
files are written locally and copied up (``LocalMirror``).
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import Any

_URI = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.\-]*://")
_configured = False


def is_remote(path: Any) -> bool:
    """Whether ``path`` is a URI (``gs://bucket/...``) rather than a local path."""
    return bool(_URI.match(os.fspath(path) if not isinstance(path, str) else path))


def configure_emulator() -> None:
    """Points tensorstore (orbax's storage) at ``STORAGE_EMULATOR_HOST`` when that is set
    (gcsfs reads it itself); a ``TENSORSTORE_GCS_HTTP_URL`` already set is kept. Quiets
    gcsfs's log line about the bucket type it cannot query without credentials."""
    global _configured
    if _configured:
        return
    _configured = True
    host = os.environ.get("STORAGE_EMULATOR_HOST", "")
    if host and host != "default":
        url = host if "://" in host else f"http://{host}"
        os.environ.setdefault("TENSORSTORE_GCS_HTTP_URL", url)
        os.environ.setdefault("GOOGLE_CLOUD_PROJECT", "emulator")
        logging.getLogger("gcsfs").setLevel(logging.ERROR)


def user_path(path: Any) -> Any:
    """``epath.Path`` for a URI, else ``pathlib.Path(path)`` as given."""
    if isinstance(path, Path):
        return path
    text = os.fspath(path)
    if is_remote(text):
        configure_emulator()
        from etils import epath

        return epath.Path(text)
    return Path(text)


def as_path(path: Any) -> Any:
    """``user_path``, with a local path made absolute (``~`` expanded)."""
    path = user_path(path)
    return path if is_remote(path) else path.expanduser().absolute()


def glob(pattern: str) -> list[str]:
    """Sorted matches of a glob pattern, local or remote (``gs://b/shards/*.tar``)."""
    if not is_remote(pattern):
        import glob as glob_lib

        return sorted(glob_lib.glob(pattern))
    magic = min(pattern.find(c) for c in "*?[" if c in pattern)
    base, _, _ = pattern[:magic].rpartition("/")
    return sorted(str(p) for p in user_path(base).glob(pattern[len(base) + 1 :]))


def open_binary(path: Any) -> Any:
    """A binary read stream of a local or remote file."""
    return user_path(path).open("rb")


def append_text(path: Any, text: str) -> None:
    """Appends ``text`` to the file (object stores: rewrites the object with it added)."""
    if not is_remote(path):
        with Path(path).open("a") as f:
            f.write(text)
        return
    old = path.read_text() if path.exists() else ""
    path.write_text(old + text)


def copy_tree(src: Path, dst: Any) -> None:
    """Copies the local directory ``src`` into ``dst`` (local or remote), file by file."""
    for file in sorted(p for p in src.rglob("*") if p.is_file()):
        target = dst / str(file.relative_to(src))
        target.parent.mkdir(parents=True, exist_ok=True)
        if is_remote(target):
            target.write_bytes(file.read_bytes())
        else:
            shutil.copyfile(file, target)


class LocalMirror:
    """A local directory standing in for ``target``: itself when ``target`` is local, else a
    temporary directory whose files ``sync`` copies to ``target`` (and ``close`` removes)."""

    def __init__(self, target: Any):
        self.target = target
        self.remote = is_remote(target)
        self.local = Path(tempfile.mkdtemp(prefix="mmjax-mirror-")) if self.remote else target

    def sync(self) -> None:
        if self.remote:
            copy_tree(self.local, self.target)

    def close(self) -> None:
        if self.remote:
            self.sync()
            shutil.rmtree(self.local, ignore_errors=True)
