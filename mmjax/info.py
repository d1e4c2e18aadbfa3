"""``mmjax info``: JAX version, devices and parameter counts of a config's model."""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import flax.traverse_util
import jax
import numpy as np

from mmjax.tasks import build_task


def param_shapes(config: Any) -> dict[str, tuple[int, ...]]:
    """``{'image/encoder/layer_0/...': shape}`` without allocating params."""
    task = build_task(config)
    abstract = jax.eval_shape(task.init, jax.random.PRNGKey(0))
    flat = flax.traverse_util.flatten_dict(nn.unbox(abstract)["params"], sep="/")
    return {k: tuple(v.shape) for k, v in flat.items()}


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
