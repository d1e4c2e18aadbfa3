"""Reading JSON-lines files (``metrics.jsonl``, a ``files:`` source's captions)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any


def read_json_lines(
    path: Path, error: type[Exception] = ValueError
) -> Iterator[tuple[int, dict[str, Any]]]:
    """``(line number, object)`` for each non-blank line of ``path`` (numbered from 1).
    A line that is not UTF-8 text or not a JSON object raises ``error`` naming
    ``path:line``."""
    with path.open("rb") as f:
        for n, raw in enumerate(f, 1):
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as e:
                raise error(f"{path}:{n}: not UTF-8 text ({e})") from None
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as e:
                raise error(f"{path}:{n}: not a JSON object ({e})") from None
            if not isinstance(row, dict):
                raise error(f"{path}:{n}: not a JSON object")
            yield n, row
