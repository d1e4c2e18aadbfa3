"""Optimizers and learning-rate schedules from ``config.optim``."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import flax.traverse_util
import jax
import optax

Schedule = Callable[[jax.Array], jax.Array]

# Leaf names that never get weight decay: embeddings and learned positions /
# tokens act like biases, and the temperature must not shrink toward 0.
NO_DECAY_NAMES = frozenset(
    {"embedding", "pos_embed", "cls_token", "probe", "logit_scale", "logit_bias"}
)


def make_schedule(optim_cfg: Any, total_steps: int) -> Schedule:
    """Learning rate by step: linear warmup then ``constant`` / ``cosine`` / ``linear`` decay."""
    lr = optim_cfg.lr
    warmup = int(optim_cfg.warmup_steps)
    kind = optim_cfg.schedule
    end = lr * optim_cfg.get("end_lr_fraction", 0.0)
    if warmup >= total_steps and kind != "constant":
        raise ValueError(
            f"config.optim.warmup_steps ({warmup}) must be smaller than train.steps ({total_steps})"
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
        return optax.join_schedules(
            [optax.linear_schedule(0.0, lr, warmup), optax.constant_schedule(lr)], [warmup]
        )
    raise ValueError(
        f"config.optim.schedule: unknown {kind!r}; known: 'cosine', 'linear', 'constant'"
    )


def decay_mask(params: Any) -> Any:
    """True for params that get weight decay: kernels (ndim >= 2) not in ``NO_DECAY_NAMES``."""
    flat = flax.traverse_util.flatten_dict(params)
    mask = {
        path: getattr(leaf, "ndim", len(getattr(leaf, "shape", ()))) >= 2
        and path[-1] not in NO_DECAY_NAMES
        for path, leaf in flat.items()
    }
    return flax.traverse_util.unflatten_dict(mask)


def make_optimizer(
    optim_cfg: Any, total_steps: int
) -> tuple[optax.GradientTransformation, Schedule]:
    """``(tx, schedule)``: global-norm clipping then AdamW with the decay mask."""
    schedule = make_schedule(optim_cfg, total_steps)
    if optim_cfg.name != "adamw":
        raise ValueError(f"config.optim.name: unknown {optim_cfg.name!r}; known: 'adamw'")
    parts = []
    if optim_cfg.get("grad_clip_norm"):
        parts.append(optax.clip_by_global_norm(optim_cfg.grad_clip_norm))
    parts.append(
        optax.adamw(
            schedule,
            b1=optim_cfg.b1,
            b2=optim_cfg.b2,
            eps=optim_cfg.eps,
            weight_decay=optim_cfg.weight_decay,
            mask=decay_mask,
        )
    )
    return optax.chain(*parts), schedule
