"""Resolving ``path_or_id``: a local directory, or a Hub id from the local HF cache."""

from __future__ import annotations

import os
from pathlib import Path

ALLOW_PATTERNS = ["*.json", "*.safetensors", "*.msgpack", "*.txt", "*.model"]


def hub_cache() -> Path:
    """``$HF_HUB_CACHE``, else ``$HF_HOME/hub``, else ``~/.cache/huggingface/hub``."""
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"])
    home = os.environ.get("HF_HOME") or Path("~/.cache/huggingface").expanduser()
    return Path(home) / "hub"


def resolve(path_or_id: str | Path, allow_network: bool = False, revision: str = "main") -> Path:
    """The model directory for ``path_or_id``.

    A directory is used as is (a file inside one stands for its directory). Otherwise
    ``org/name`` is looked up in the HF cache (``models--org--name/snapshots/<ref>``);
    only with ``allow_network=True`` is it downloaded (``huggingface_hub``, weights in
    safetensors / msgpack only).
    """
    path = Path(path_or_id).expanduser()
    if path.is_dir():
        return path
    if path.is_file():
        return path.parent
    repo = hub_cache() / ("models--" + str(path_or_id).replace("/", "--"))
    ref_file = repo / "refs" / revision
    snapshot = repo / "snapshots" / (ref_file.read_text().strip() if ref_file.is_file() else "")
    if ref_file.is_file() and snapshot.is_dir():
        return snapshot
    if allow_network:
        from huggingface_hub import snapshot_download

        downloaded = snapshot_download(
            str(path_or_id), revision=revision, allow_patterns=ALLOW_PATTERNS
        )
        return Path(downloaded)
    raise FileNotFoundError(
        f"{str(path_or_id)!r} is not a directory and not in the Hugging Face cache at {repo}; "
        "pass allow_network=True to download it"
    )
