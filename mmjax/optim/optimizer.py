"""Optimizers over the trainable params of a ``ParamPlan``, and the EMA of params.

``make_optimizer`` builds ``clip_by_global_norm -> preconditioner -> scale_by_plan``:
the preconditioner is Adam (``adamw``), Lion (``lion``) or factored RMS (``adafactor``),
and ``scale_by_plan`` applies decoupled weight decay and the learning rate per param,
``u <- -lr_p(step) * (u + wd_p * p)``, with ``lr_p`` the param's schedule (its rule's
own or ``config.optim``'s) times its multiplier (rule ``lr_mult`` x LLRD; for params stacked
by ``scan_layers`` a vector along the leading layers axis) and ``wd_p``
its rule's weight decay (0 where the decay mask is off). For one rule with multiplier 1
this is exactly ``optax.adamw(schedule, ..., mask=...)``. The transform only ever sees
the trainable subtree, so frozen params have no optimizer state.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import optax

from mmjax.optim.param_rules import (
    NO_DECAY_NAMES,
    ParamPlan,
    default_decays,
    flat_params,
    make_param_plan,
    unflat_params,
)
from mmjax.optim.schedules import Schedule, make_schedule

__all__ = [
    "NO_DECAY_NAMES",
    "OPTIMIZERS",
    "decay_mask",
    "ema_update",
    "make_optimizer",
    "make_schedule",
    "scale_by_plan",
]

OPTIMIZERS = ("adamw", "lion", "adafactor")


def decay_mask(params: Any) -> Any:
    """The default weight-decay mask as a tree of bools (``param_rules.default_decays``)."""
    flat = flat_params(params)
    return unflat_params(
        {p: default_decays(p, getattr(leaf, "shape", ())) for p, leaf in flat.items()}
    )


def scale_by_plan(
    plan: ParamPlan | None, schedules: dict[int | None, Schedule]
) -> optax.GradientTransformation:
    """Decoupled weight decay and per-param learning rate: ``u <- -lr_p(n) * (u + wd_p * p)``.

    ``schedules[None]`` is the base schedule, ``schedules[i]`` rule ``i``'s own one.
    State: the step count only (so ``init`` works with ``plan=None``).
    """

    def init(params: Any) -> optax.ScaleByScheduleState:
        del params
        return optax.ScaleByScheduleState(count=jnp.zeros([], jnp.int32))

    def update(
        updates: Any, state: optax.ScaleByScheduleState, params: Any = None
    ) -> tuple[Any, optax.ScaleByScheduleState]:
        flat_u = flat_params(updates)
        flat_p = flat_params(params) if params is not None else {}
        step_sizes = {key: -1 * fn(state.count) for key, fn in schedules.items()}
        out = {}
        for path, u in flat_u.items():
            wd = plan.weight_decay[path]
            if wd:
                if path not in flat_p:
                    raise ValueError("scale_by_plan needs params for weight decay")
                u = u + wd * flat_p[path]
            mult = plan.lr_mult[path]
            if isinstance(mult, tuple):  # stacked layers [depth, ...]: one multiplier per layer
                mult = jnp.asarray(mult, jnp.float32).reshape((-1,) + (1,) * (u.ndim - 1))
            step_size = step_sizes[plan.schedule_rule(path)] * mult
            out[path] = jnp.asarray(step_size, dtype=u.dtype) * u
        return unflat_params(out), optax.ScaleByScheduleState(
            count=optax.safe_increment(state.count)
        )

    return optax.GradientTransformation(init, update)


def _preconditioner(optim_cfg: Any) -> optax.GradientTransformation:
    name = optim_cfg.name
    if name == "adamw":
        return optax.scale_by_adam(b1=optim_cfg.b1, b2=optim_cfg.b2, eps=optim_cfg.eps)
    if name == "lion":
        return optax.scale_by_lion(b1=optim_cfg.b1, b2=optim_cfg.b2)
    if name == "adafactor":
        # optax.adafactor's preconditioning (factored second moments, update clipping at
        # block RMS 1); decay and learning rate then come from scale_by_plan.
        return optax.chain(
            optax.scale_by_factored_rms(epsilon=optim_cfg.get("adafactor_eps", 1e-30)),
            optax.clip_by_block_rms(1.0),
        )
    raise ValueError(f"config.optim.name: unknown {name!r}; known: {', '.join(OPTIMIZERS)}")


def make_optimizer(
    optim_cfg: Any, total_steps: int, plan: ParamPlan | None = None
) -> tuple[optax.GradientTransformation, Schedule]:
    """``(tx, schedule)`` over ``plan``'s trainable params; ``schedule`` is the base one.

    Without a plan, ``tx`` builds one from the params it is given (all rules of
    ``optim_cfg`` apply; handy for tests and tools that hold the full tree).
    """
    schedule = make_schedule(optim_cfg, total_steps)
    precondition = _preconditioner(optim_cfg)
    clip = (
        [optax.clip_by_global_norm(optim_cfg.grad_clip_norm)]
        if optim_cfg.get("grad_clip_norm")
        else []
    )

    def build(plan: ParamPlan) -> optax.GradientTransformation:
        schedules: dict[int | None, Schedule] = {None: schedule}
        for i, (_, rule) in enumerate(plan.rules):
            if rule is not None and rule.get("schedule"):
                cfg = {**dict(optim_cfg), **rule["schedule"]}
                schedules[i] = make_schedule(cfg, total_steps, f"config.optim.rules[{i}]")
        return optax.chain(*clip, precondition, scale_by_plan(plan, schedules))

    if plan is not None:
        return build(plan), schedule

    def plan_of(params: Any) -> ParamPlan:
        shapes = {p: getattr(v, "shape", ()) for p, v in flat_params(params).items()}
        return make_param_plan(optim_cfg, shapes)

    def init(params: Any) -> Any:  # the state does not depend on the plan
        return optax.chain(*clip, precondition, scale_by_plan(None, {})).init(params)

    def update(updates: Any, state: Any, params: Any = None) -> Any:
        return build(plan_of(params)).update(updates, state, params)

    return optax.GradientTransformation(init, update), schedule


def ema_update(ema: Any, params: Any, decay: float) -> Any:
    """One EMA step: ``ema <- decay * ema + (1 - decay) * params`` (leafwise)."""
    return jax.tree.map(lambda e, p: decay * e + (1.0 - decay) * p, ema, params)
