"""transformers' defaults for the ``config.json`` keys ``save_pretrained`` may leave out,
per family and config section (``assets/defaults.json``: data, not code)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

DEFAULTS: dict[str, dict[str, Any]] = json.loads(
    (Path(__file__).parent / "assets" / "defaults.json").read_text()
)
