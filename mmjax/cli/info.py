"""``mmjax info``: JAX version, devices, parameter counts of a config's model, and how its
mesh shards the train state (PartitionSpec per param group, bytes per device)."""

from __future__ import annotations

from typing import Any

import jax
import numpy as np

from mmjax.tasks import build_task
from mmjax.train.loop import make_plan
from mmjax.train.loop import param_shapes as task_param_shapes


def param_shapes(config: Any) -> dict[str, tuple[int, ...]]:
    """``{'image/encoder/layer_0/...': shape}`` without allocating params."""
    return task_param_shapes(build_task(config))


def count_params(config: Any) -> dict[str, int]:
    """Parameter count per top-level group (``image``, ``text``, ...) and ``total``."""
    counts: dict[str, int] = {}
    for path, shape in param_shapes(config).items():
        group = path.split("/")[0]
        counts[group] = counts.get(group, 0) + int(np.prod(shape))
    counts["total"] = sum(counts.values())
    return counts


def print_info(config: Any) -> None:
    print(f"jax {jax.__version__} ({jax.default_backend()}), {jax.process_count()} process(es)")
    for d in jax.devices():
        print(f"  {d.id}: {d.device_kind} ({d.platform})")
    print("parameters:")
    for group, n in count_params(config).items():
        print(f"  {group:<16} {n:>14,}")
    print("config.optim.rules:")
    plan = make_plan(build_task(config), config.optim)  # the task's buffers frozen too
    print(plan.table())
    print_sharding(config, plan)


def print_sharding(config: Any, plan: Any) -> None:
    """The mesh, each param's PartitionSpec (grouped) and state bytes per device."""
    from mmjax.optim.optimizer import make_optimizer
    from mmjax.parallel import sharding
    from mmjax.parallel.sharding_report import abstract_state, print_report

    mesh = sharding.make_mesh(config.mesh)
    rules = sharding.logical_rules(config.mesh)
    tx, _ = make_optimizer(config.optim, int(config.train.steps), plan)
    ema = float(config.optim.get("ema_decay", 0.0) or 0.0) > 0
    abstract, shardings = abstract_state(build_task(config), tx, mesh, rules, plan, ema)
    print_report(abstract, shardings, mesh)
