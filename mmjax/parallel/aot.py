"""``mmjax compile``: compile the real train step for a TPU slice on any machine (no TPU).

``compile_for_topology(config, topology)`` builds the abstract train state (``jax.eval_shape``
from ``ShapeDtypeStruct``s: nothing is allocated), the config's mesh over the slice's
compile-only devices (libtpu), lowers and compiles ``train.make_train_step`` with the
shardings ``mmjax train`` uses, and returns the report: per-chip memory against the chip's
HBM (fits or not), XLA vs analytic FLOPs, the collectives of the compiled HLO and a roofline
bound on the step time. MaxText's ``train_compile.py`` does the same for LLMs.
"""

from __future__ import annotations

import os
import re
import time
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from mmjax.optim.optimizer import make_optimizer
from mmjax.parallel import compile_report, sharding
from mmjax.parallel.hlo_collectives import collectives
from mmjax.parallel.tpu_topology import Topology, topology_devices
from mmjax.tasks import build_task
from mmjax.train.loop import make_plan, make_train_step, state_init_fn

# libtpu's two out-of-HBM messages: "Used 20.1G of 15.75G hbm" and "... HLO temporaries
# (99.05G) exceeds available HBM (15.75G)".
_OOM = re.compile(
    r"Used ([\d.]+)([KMGT]?) of ([\d.]+)([KMGT]?) hbm"
    r"|\(([\d.]+)([KMGT]?)\) exceeds available HBM \(([\d.]+)([KMGT]?)\)"
)
_UNIT = {"": 1, "K": 2**10, "M": 2**20, "G": 2**30, "T": 2**40}


class DoesNotFit(RuntimeError):
    """The compiler ran out of HBM: ``needed`` and ``available`` bytes per chip."""

    def __init__(self, needed: float, available: float, detail: str):
        self.needed, self.available = needed, available
        super().__init__(
            f"does not fit: needs {compile_report.human_bytes(needed)} per chip, "
            f"{compile_report.human_bytes(available)} available ({detail})"
        )


def _unboxed(tree: Any) -> Any:
    """The arrays (here ``ShapeDtypeStruct``s) out of flax's ``Partitioned`` boxes, without
    ``nn.unbox``'s sharding constraint (which needs concrete devices)."""
    is_box = lambda x: isinstance(x, nn.Partitioned)  # noqa: E731
    return jax.tree.map(lambda x: x.value if is_box(x) else x, tree, is_leaf=is_box)


def compile_for_topology(config: Any, topology: Topology, name: str = "") -> dict:
    """Compiles ``config``'s train step for ``topology``; the report as a JSON-able dict.
    Raises ``DoesNotFit`` (per-chip bytes needed vs available) when the compiler runs out of
    HBM, ``ValueError`` for a mesh the slice cannot hold."""
    devices = topology_devices(topology)
    mesh = sharding.make_mesh(config.mesh, devices)
    rules = sharding.logical_rules(config.mesh)
    task = build_task(config)
    plan = make_plan(task, config.optim)
    steps = int(config.train.steps)
    tx, schedule = make_optimizer(config.optim, steps, plan)
    ema_decay = float(config.optim.get("ema_decay", 0.0) or 0.0)
    batch_size = int(config.train.batch_size)
    key = jax.ShapeDtypeStruct((2,), jnp.uint32)  # an eager PRNGKey would need a device
    with jax.set_mesh(mesh), nn.logical_axis_rules(rules):
        boxed = jax.eval_shape(state_init_fn(task, tx, plan, ema_decay > 0), key)
        state_shardings = sharding.logical_shardings(boxed, mesh, rules)
        state = _unboxed(boxed)
        batch = jax.eval_shape(lambda: task.dummy_batch(batch_size))
        step = jax.jit(
            make_train_step(task, tx, schedule, int(config.optim.get("accum_steps", 1)), ema_decay),
            in_shardings=(state_shardings, sharding.batch_sharding(mesh, rules)),
            out_shardings=(state_shardings, sharding.replicated(mesh)),
            donate_argnums=0,
        )
        t0 = time.perf_counter()
        try:
            compiled = step.lower(state, batch).compile()
        except jax.errors.JaxRuntimeError as e:
            m = _OOM.search(str(e))
            if "RESOURCE_EXHAUSTED" not in str(e) or not m:
                raise
            g = [x for x in m.groups() if x is not None]
            needed, available = float(g[0]) * _UNIT[g[1]], float(g[2]) * _UNIT[g[3]]
            detail = str(e).splitlines()[0].removeprefix("RESOURCE_EXHAUSTED: ")
            raise DoesNotFit(needed, available, f"XLA: {detail}") from None
        seconds = time.perf_counter() - t0
    mem = compile_report.memory_bytes(compiled)
    total = compile_report.memory_total(mem)
    chip = topology.chip
    flops = compile_report.xla_flops(compiled) or 0.0
    hbm_bytes = compile_report.hbm_bytes_accessed(compiled) or 0.0
    coll = collectives(compiled.as_text())
    coll_bytes = sum(c["bytes"] for c in coll.values())
    return {
        "config": name,
        "topology": topology.name,
        "jax_topology": topology.jax_name,
        "num_slices": topology.num_slices,
        "num_chips": topology.total_chips,
        "chip": {
            "name": chip.name,
            "hbm_bytes": chip.hbm_bytes,
            "peak_flops": chip.peak_flops,
            "hbm_bandwidth": chip.hbm_bandwidth,
            "ici_bandwidth": chip.ici_bandwidth,
        },
        "mesh": dict(mesh.shape),
        "global_batch": batch_size,
        "compile_seconds": seconds,
        "load_1min": os.getloadavg()[0],
        "memory_per_chip": mem,
        "memory_total": total,
        "fits": total <= chip.hbm_bytes,
        "headroom_bytes": chip.hbm_bytes - total,
        "xla_flops_per_chip": flops,
        "analytic_flops": compile_report.analytic_flops(config, batch_size),
        "analytic_flops_as_xla_counts": compile_report.analytic_flops_as_xla_counts(
            config, batch_size
        ),
        "hbm_bytes_accessed_per_chip": hbm_bytes,
        "collectives": coll,
        "roofline": compile_report.roofline(flops, hbm_bytes, coll_bytes, chip),
    }
