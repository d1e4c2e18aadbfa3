"""What a mesh does to the train state: each param's sharding, bytes per device.

Used by ``mmjax info`` and ``benchmarks/scaling.py``; all from ``jax.eval_shape`` and the
shardings, so nothing is allocated.
"""

from __future__ import annotations

import math
import re
from typing import Any

import flax.linen as nn
import jax
import numpy as np
from jax.sharding import Mesh

from mmjax.parallel import sharding
from mmjax.train.loop import state_init_fn


def abstract_state(
    task: Any, tx: Any, mesh: Mesh, rules: Any, plan: Any = None, ema: bool = False
) -> tuple[Any, Any]:
    """``(abstract TrainState, its NamedShardings)`` on ``mesh``, allocating nothing."""
    with jax.set_mesh(mesh), nn.logical_axis_rules(rules):
        boxed = jax.eval_shape(state_init_fn(task, tx, plan, ema), jax.random.PRNGKey(0))
        shardings = sharding.logical_shardings(boxed, mesh, rules)
    return nn.unbox(boxed), shardings


def _pattern(path: str) -> str:
    return re.sub(r"layer_\d+", "layer_*", path)


def spec_table(abstract: Any, shardings: Any) -> list[tuple[str, str, int]]:
    """``[(path pattern, PartitionSpec, count)]`` over ``params`` and ``frozen``; paths that
    differ only in the layer index (``layer_*``) and have the same spec are one row."""
    rows: dict[tuple[str, str], int] = {}
    for part in ("params", "frozen"):
        leaves = jax.tree_util.tree_leaves_with_path(getattr(shardings, part))
        for path, s in leaves:
            name = f"{part}/" + jax.tree_util.keystr(path, simple=True, separator="/")
            key = (_pattern(name), str(tuple(s.spec)) if tuple(s.spec) else "replicated")
            rows[key] = rows.get(key, 0) + 1
    return [(p, spec, n) for (p, spec), n in sorted(rows.items())]


def state_bytes(
    abstract: Any, shardings: Any, parts: tuple[str, ...] = ("params", "opt_state", "frozen", "ema")
) -> dict:
    """``{'per_device': bytes, 'total': bytes, 'replicated': bytes}`` of ``parts`` of the
    state: one device's shards (``NamedSharding.shard_shape``), all of it, and the part
    every device holds in full."""
    per_device = total = replicated = 0
    for part in parts:
        for x, s in zip(
            jax.tree.leaves(getattr(abstract, part)),
            jax.tree.leaves(getattr(shardings, part)),
            strict=True,
        ):
            itemsize = np.dtype(x.dtype).itemsize
            n = math.prod(x.shape) * itemsize
            total += n
            per_device += math.prod(s.shard_shape(x.shape)) * itemsize
            replicated += n if s.is_fully_replicated else 0
    return dict(per_device=per_device, total=total, replicated=replicated)


def print_report(abstract: Any, shardings: Any, mesh: Mesh) -> None:
    from mmjax.parallel.compile_report import human_bytes

    shape = ", ".join(f"{a}={n}" for a, n in mesh.shape.items())
    print(f"mesh: {shape} ({mesh.devices.size} devices)")
    rows = spec_table(abstract, shardings)
    width = max(len(p) for p, _, _ in rows)
    spec_width = max(len("PartitionSpec"), *(len(s) for _, s, _ in rows))
    print(f"  {'param path':<{width}}  {'PartitionSpec':<{spec_width}}  count")
    for path, spec, n in rows:
        print(f"  {path:<{width}}  {spec:<{spec_width}}  {n:>5}")
    b = state_bytes(abstract, shardings)
    print(
        f"params + optimizer state: {human_bytes(b['per_device'])} per device of "
        f"{human_bytes(b['total'])} ({b['per_device'] / max(b['total'], 1):.3f}; "
        f"{human_bytes(b['replicated'])} replicated)"
    )
