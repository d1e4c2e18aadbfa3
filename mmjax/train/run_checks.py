"""Checks of a run's numeric config keys, made before anything is built or compiled.

Each bad value is a ``ConfigError`` naming its key, so a typo costs a second, not a
compile plus the steps up to where the value is first used (or, for the retention keys,
the checkpoints: ``max_checkpoints=0`` used to delete every checkpoint, the last one too).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

import jax

from mmjax.config import ConfigError

# key: (smallest allowed value, what it means) for integer keys of config.train
TRAIN_INTS = {
    "steps": (1, "the number of training steps"),
    "batch_size": (1, "the global batch size"),
    "eval_batch_size": (1, "the global eval batch size"),
    "log_every": (0, "steps between log rows (0: only the last)"),
    "eval_every": (0, "steps between evals (0: only the last)"),
    "checkpoint_every": (0, "steps between checkpoints (0: only the last)"),
    "max_checkpoints": (1, "how many recent checkpoints are kept; the latest is what resumes"),
    "keep_period": (0, "every k-th checkpoint is kept forever (0: off)"),
    "keep_best": (1, "how many best checkpoints are kept"),
}
# key: (smallest allowed value, whether the smallest is excluded) for float keys of config.optim
OPTIM_FLOATS = {
    "lr": (0.0, False),
    "weight_decay": (0.0, False),
    "grad_clip_norm": (0.0, False),
    "warmup_steps": (0.0, False),
    "eps": (0.0, True),
}


def check_run_config(config: Any, mesh: jax.sharding.Mesh | None = None) -> None:
    """Raises ``ConfigError`` for the first bad key of ``config`` (``train`` integers,
    ``optim`` numbers, ``model`` tower shapes; with ``mesh``, a batch it cannot split)."""
    for key, (low, meaning) in TRAIN_INTS.items():
        if key in config.train:
            _int_at_least(f"config.train.{key}", config.train[key], low, meaning)
    if config.train.get("best_mode", "max") not in ("max", "min"):
        raise ConfigError(
            f"config.train.best_mode must be 'max' or 'min', got {config.train.best_mode!r}"
        )
    for key, (low, strict) in OPTIM_FLOATS.items():
        value = config.optim.get(key)
        if value is None:  # e.g. grad_clip_norm=None: off
            continue
        bad = not isinstance(value, (int, float)) or isinstance(value, bool)
        bad = bad or not math.isfinite(value) or value < low or (strict and value == low)
        if bad:
            relation = ">" if strict else ">="
            raise ConfigError(
                f"config.optim.{key} must be a number {relation} {low}, got {value!r}"
            )
    for key in ("b1", "b2"):
        value = config.optim.get(key)
        if isinstance(value, (int, float)) and not 0.0 <= value < 1.0:
            raise ConfigError(f"config.optim.{key} must be in [0, 1), got {value!r}")
    for where, section in _sections(config.model, "config.model"):
        _check_tower(where, section)
    if mesh is not None:
        _check_batch(config, mesh)


def _int_at_least(key: str, value: Any, low: int, meaning: str) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < low:
        raise ConfigError(f"{key} must be an integer >= {low} ({meaning}), got {value!r}")


def _sections(node: Any, where: str) -> Iterator[tuple[str, Any]]:
    """Every dict-like section under ``node`` (itself included), with its dotted name."""
    if not hasattr(node, "items"):
        return
    yield where, node
    for key, value in node.items():
        yield from _sections(value, f"{where}.{key}")


def _check_tower(where: str, section: Any) -> None:
    """Widths that the heads divide, positive sizes, patches no larger than the image."""
    for key in ("width", "depth", "num_heads", "mlp_dim", "image_size"):
        value = section.get(key)
        if value is not None and not isinstance(value, bool) and isinstance(value, int):
            _int_at_least(f"{where}.{key}", value, 1, "a size")
    patch = section.get("patch_size")
    if patch is not None:
        for p in patch if isinstance(patch, (tuple, list)) else (patch,):
            _int_at_least(f"{where}.patch_size", p, 1, "pixels per patch side")
        size = section.get("image_size")
        if isinstance(size, int) and isinstance(patch, int) and patch > size:
            raise ConfigError(f"{where}.patch_size ({patch}) is larger than image_size ({size})")
    width, heads = section.get("width"), section.get("num_heads")
    if (
        isinstance(width, int)
        and isinstance(heads, int)
        and heads
        and section.get("head_dim") is None
    ):
        if width % heads:
            raise ConfigError(f"{where}.num_heads ({heads}) must divide {where}.width ({width})")


def _check_batch(config: Any, mesh: jax.sharding.Mesh) -> None:
    """The batch axis is split over ``data`` x ``fsdp`` (``sharding.batch_sharding``)."""
    shards = mesh.shape["data"] * mesh.shape["fsdp"]
    for key in ("batch_size", "eval_batch_size"):
        value = config.train.get(key)
        if isinstance(value, int) and value % shards:
            raise ConfigError(
                f"config.train.{key} ({value}) must be divisible by the mesh's data x fsdp "
                f"axes ({mesh.shape['data']} x {mesh.shape['fsdp']} = {shards} devices)"
            )


def eval_metric_names(
    task: Any, eval_fn: Any, params: Any, batch: dict[str, Any], mesh: Any
) -> set[str]:
    """The ``eval/...`` keys an eval will log, found without running the model: the task's
    metrics of zero outputs shaped as ``eval_fn``'s (``jax.eval_shape``); ``set()`` when
    the task's metrics cannot be computed on zeros."""
    import numpy as np

    from mmjax.parallel import sharding

    inputs = sharding.global_batch({k: v for k, v in batch.items() if k != "valid"}, mesh)
    shapes = jax.eval_shape(eval_fn, params, inputs)
    zeros = {k: np.zeros(v.shape, v.dtype) for k, v in shapes.items()}
    try:
        return {f"eval/{k}" for k in task.eval_metrics(zeros)}
    except Exception:  # noqa: BLE001 - then the first eval checks the name (BestCheckpointer)
        return set()


def check_best_metric(metric: str, names: set[str]) -> None:
    """``config.train.best_metric`` must be one of the eval metrics (``names``; empty:
    unknown, not checked here)."""
    if not names or metric in names:
        return
    import difflib

    close = difflib.get_close_matches(metric, sorted(names), n=1)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    raise ConfigError(
        f"config.train.best_metric {metric!r} is not an eval metric of this task{hint} "
        f"(they are {sorted(names)})"
    )
