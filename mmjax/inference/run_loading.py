"""A finished (or running) ``mmjax train`` run's config and params, on the host.

``load_run(path)`` takes a run workdir, its ``checkpoints/`` directory or one step
directory and returns the config the run trained with (saved in the checkpoint) and the
params of that step: the EMA params when the run kept an EMA (what its eval used), with
the frozen params merged in.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import ml_collections
import numpy as np

from mmjax.optim.param_rules import merge_params
from mmjax.train.checkpoint import latest_step_dir, read_state


@dataclasses.dataclass(frozen=True)
class LoadedRun:
    """``config`` (the run's, from its checkpoint), ``params`` (nested dicts of NumPy arrays:
    EMA or trainable, plus frozen), ``step`` and the ``step_dir`` they came from."""

    config: ml_collections.ConfigDict
    params: dict[str, Any]
    step: int
    step_dir: Path
    uses_ema: bool


def run_config(step_dir: Path) -> ml_collections.ConfigDict:
    """The config saved with a checkpoint step (``<step>/config/metadata``)."""
    path = Path(step_dir) / "config" / "metadata"
    if not path.is_file():
        raise FileNotFoundError(f"{step_dir} has no saved config ({path} is missing)")
    try:
        return ml_collections.ConfigDict(json.loads(path.read_text()), type_safe=False)
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}: not valid JSON ({e})") from e


def uses_ema(config: Any) -> bool:
    return float(config.optim.get("ema_decay", 0.0) or 0.0) > 0


def load_run(path: str | Path) -> LoadedRun:
    """The latest step under ``path`` (workdir, ``checkpoints/`` or a step directory)."""
    step_dir = latest_step_dir(path)
    config = run_config(step_dir)
    state = read_state(step_dir)
    ema = uses_ema(config) and bool(state.get("ema"))
    params = merge_params(state["ema"] if ema else state["params"], state.get("frozen") or {})
    return LoadedRun(
        config=config,
        params=params,
        step=int(np.asarray(state["step"])),
        step_dir=step_dir,
        uses_ema=ema,
    )


def is_run(path: str | Path) -> bool:
    """Whether ``path`` holds an ``mmjax train`` checkpoint (not an HF directory)."""
    try:
        return (latest_step_dir(path) / "config").is_dir()
    except FileNotFoundError:
        return False
