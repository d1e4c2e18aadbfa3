"""Learning-rate schedules from config keys: constant, linear, cosine, rsqrt, with warmup.

A schedule config is any mapping with ``SCHEDULE_KEYS`` (``config.optim`` itself, or
``config.optim`` updated with a rule's own ``schedule`` dict):

- ``lr``: peak learning rate, reached at the end of a linear warmup from 0
  (``warmup_steps``);
- ``schedule``: ``cosine`` / ``linear`` decay to ``lr * end_lr_fraction`` at
  ``total_steps``; ``constant``; ``rsqrt`` (``lr * sqrt(timescale / (timescale + t))``,
  ``t`` steps after warmup; ``timescale`` defaults to ``warmup_steps``, at least 1);
- ``cooldown_steps`` (``constant`` and ``rsqrt``): the last steps decay linearly to
  ``lr * end_lr_fraction``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import jax
import jax.numpy as jnp
import optax

from mmjax.config import ConfigError

Schedule = Callable[[jax.Array], jax.Array]

SCHEDULE_KEYS = frozenset(
    {"lr", "schedule", "warmup_steps", "end_lr_fraction", "cooldown_steps", "timescale"}
)
SCHEDULES = ("constant", "linear", "cosine", "rsqrt")


def _with_cooldown(base: Schedule, cooldown: int, total_steps: int, end: float) -> Schedule:
    """``base`` until ``total_steps - cooldown``, then linear from ``base`` there to ``end``."""
    if not cooldown:
        return base
    start = total_steps - cooldown

    def schedule(step: jax.Array) -> jax.Array:
        frac = jnp.clip((step - start) / cooldown, 0.0, 1.0)
        at_start = base(jnp.asarray(start))
        return jnp.where(step < start, base(step), at_start + frac * (end - at_start))

    return schedule


def make_schedule(
    cfg: Mapping[str, Any] | Any, total_steps: int, where: str = "config.optim"
) -> Schedule:
    """The schedule ``cfg`` describes over ``total_steps``; ``where`` names it in errors."""
    lr = float(cfg["lr"])
    warmup = int(cfg.get("warmup_steps", 0))
    kind = cfg.get("schedule", "cosine")
    end = lr * float(cfg.get("end_lr_fraction", 0.0))
    cooldown = int(cfg.get("cooldown_steps", 0) or 0)
    if kind not in SCHEDULES:
        raise ConfigError(f"{where}.schedule: unknown {kind!r}; known: {', '.join(SCHEDULES)}")
    if warmup >= total_steps and kind in ("cosine", "linear"):
        raise ConfigError(
            f"{where}.warmup_steps ({warmup}) must be smaller than train.steps ({total_steps})"
        )
    if cooldown and kind not in ("constant", "rsqrt"):
        raise ConfigError(f"{where}.cooldown_steps is for 'constant' and 'rsqrt', not {kind!r}")
    if cooldown < 0 or warmup + cooldown > total_steps:
        raise ConfigError(
            f"{where}: warmup_steps ({warmup}) + cooldown_steps ({cooldown}) must fit in "
            f"train.steps ({total_steps})"
        )
    if kind == "cosine":
        return optax.warmup_cosine_decay_schedule(0.0, lr, warmup, total_steps, end)
    if kind == "linear":
        return optax.join_schedules(
            [
                optax.linear_schedule(0.0, lr, warmup),
                optax.linear_schedule(lr, end, total_steps - warmup),
            ],
            [warmup],
        )
    if kind == "constant":
        base = optax.join_schedules(
            [optax.linear_schedule(0.0, lr, warmup), optax.constant_schedule(lr)], [warmup]
        )
        return _with_cooldown(base, cooldown, total_steps, end)
    timescale = float(cfg.get("timescale", 0) or max(warmup, 1))

    def rsqrt(after: jax.Array) -> jax.Array:  # join_schedules passes steps after warmup
        return lr * jnp.sqrt(timescale / (timescale + jnp.maximum(after, 0)))

    base = optax.join_schedules([optax.linear_schedule(0.0, lr, warmup), rsqrt], [warmup])
    return _with_cooldown(base, cooldown, total_steps, end)
