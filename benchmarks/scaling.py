"""Scale-out costs: compile time with and without layer scan, step time and memory per mesh.

    python benchmarks/scaling.py [--depths 6,12,24] [--steps 5] [--json PATH] [--smoke]

Runs on 8 fake CPU devices (set here unless ``XLA_FLAGS`` already forces a device count).
``compile`` rows: the CLIP train step (tiny widths, ``depth`` blocks in each tower) lowered
and compiled on one device, unrolled vs ``model.scan_layers``; unrolled compile time grows
with depth, scanned stays flat. ``mesh`` rows: the same step (depth 2) on each mesh of the
8 devices: seconds per step (median, after compile) and the params + optimizer bytes one
device holds vs all of them (``bytes_per_device`` / ``bytes_total``). CPU "devices" share
the host's cores, so step times compare layouts' overheads, not real speed-ups.
"""

from __future__ import annotations

import os

if "xla_force_host_platform_device_count" not in os.environ.get("XLA_FLAGS", ""):
    os.environ["XLA_FLAGS"] = (
        os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=8"
    )

import argparse  # noqa: E402
import json  # noqa: E402
import statistics  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import flax.linen as nn  # noqa: E402
import jax  # noqa: E402
import numpy as np  # noqa: E402
from train_step import time_step  # noqa: E402  (benchmarks/ is on sys.path when run as a script)

from mmjax import config as config_lib  # noqa: E402
from mmjax.optim.optimizer import make_optimizer  # noqa: E402
from mmjax.parallel import sharding  # noqa: E402
from mmjax.parallel.sharding_report import abstract_state, state_bytes  # noqa: E402
from mmjax.tasks import build_task  # noqa: E402
from mmjax.train.loop import init_train_state, make_plan, make_train_step  # noqa: E402

CONFIG = Path(__file__).resolve().parents[1] / "configs" / "clip_synthetic.py"
MESHES = {
    "data=8": dict(data=8, fsdp=1, tensor=1),
    "fsdp=8": dict(data=1, fsdp=8, tensor=1),
    "data=2,fsdp=2,tensor=2": dict(data=2, fsdp=2, tensor=2),
    "data=4,tensor=2": dict(data=4, fsdp=1, tensor=2),
}
BATCH = 16


def make_config(depth: int, scan: bool):
    cfg = config_lib.load_config(f"{CONFIG}:tiny")
    cfg.model.image.depth = depth
    cfg.model.text.depth = depth
    cfg.model.scan_layers = scan
    return cfg


def batch_arrays(n: int = BATCH, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return dict(
        image=rng.integers(0, 256, (n, 32, 32, 3), dtype=np.uint8),
        tokens=rng.integers(4, 32, (n, 12)).astype(np.int32),
        padding_mask=np.arange(12)[None] < rng.integers(3, 13, (n, 1)),
    )


def compile_row(depth: int, scan: bool) -> dict:
    """Lower + compile on one device from abstract values (nothing is allocated)."""
    cfg = make_config(depth, scan)
    mesh = sharding.make_mesh(dict(data=1, fsdp=1, tensor=1), jax.devices()[:1])
    task = build_task(cfg)
    plan = make_plan(task, cfg.optim)
    tx, schedule = make_optimizer(cfg.optim, int(cfg.train.steps), plan)
    rules = sharding.DEFAULT_RULES
    abstract, shardings = abstract_state(task, tx, mesh, rules, plan)
    args = jax.tree.map(
        lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s), abstract, shardings
    )
    data = sharding.batch_sharding(mesh)
    batch = {
        k: jax.ShapeDtypeStruct(v.shape, v.dtype, sharding=data) for k, v in batch_arrays().items()
    }
    with jax.set_mesh(mesh), nn.logical_axis_rules(rules):
        step = jax.jit(
            make_train_step(task, tx, schedule),
            in_shardings=(shardings, data),
            out_shardings=(shardings, sharding.replicated(mesh)),
            donate_argnums=0,
        )
        t0 = time.perf_counter()
        step.lower(args, batch).compile()
        seconds = time.perf_counter() - t0
    b = state_bytes(abstract, shardings)
    return dict(
        kind="compile",
        depth=depth,
        scan=scan,
        mesh="1 device",
        compile_s=seconds,
        step_s=None,
        bytes_per_device=b["per_device"],
        bytes_total=b["total"],
    )


def mesh_row(name: str, shape: dict, depth: int, steps: int) -> dict:
    cfg = make_config(depth, scan=False)
    mesh = sharding.make_mesh(shape)
    task = build_task(cfg)
    plan = make_plan(task, cfg.optim)
    tx, schedule = make_optimizer(cfg.optim, int(cfg.train.steps), plan)
    rules = sharding.DEFAULT_RULES
    state, shardings = init_train_state(task, tx, mesh, rules, 0, plan)
    b = state_bytes(state, shardings)
    with jax.set_mesh(mesh), nn.logical_axis_rules(rules):
        data = sharding.batch_sharding(mesh)
        step = jax.jit(
            make_train_step(task, tx, schedule),
            in_shardings=(shardings, data),
            out_shardings=(shardings, sharding.replicated(mesh)),
            donate_argnums=0,
        )
        batch = sharding.global_batch(batch_arrays(), mesh)
        t0 = time.perf_counter()
        step = step.lower(state, batch).compile()
        compile_s = time.perf_counter() - t0
        times, state = time_step(step, state, batch, steps, warmup=1)
    return dict(
        kind="mesh",
        depth=depth,
        scan=False,
        mesh=name,
        compile_s=compile_s,
        step_s=statistics.median(times),
        bytes_per_device=b["per_device"],
        bytes_total=b["total"],
    )


def fmt(v, spec: str) -> str:
    return "-" if v is None else format(v, spec)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--depths", default="6,12,24", help="comma-separated depths per tower")
    parser.add_argument("--mesh-depth", type=int, default=2, help="depth per tower, mesh rows")
    parser.add_argument("--steps", type=int, default=5, help="timed steps per mesh row")
    parser.add_argument("--smoke", action="store_true", help="depth 2 only, 1 step, 2 meshes")
    parser.add_argument("--json", type=Path, help="also write the rows here as a JSON list")
    args = parser.parse_args()
    depths = [2] if args.smoke else [int(d) for d in args.depths.split(",")]
    meshes = dict(list(MESHES.items())[:2]) if args.smoke else MESHES
    steps = 1 if args.smoke else args.steps
    if jax.device_count() != 8:
        raise SystemExit(f"needs 8 devices, found {jax.device_count()}")

    rows = []
    for depth in depths:
        for scan in (False, True):
            rows.append(compile_row(depth, scan))
            print(f"compiled depth {depth} scan={scan}: {rows[-1]['compile_s']:.1f}s", flush=True)
    for name, shape in meshes.items():
        rows.append(mesh_row(name, shape, args.mesh_depth, steps))

    print(f"jax {jax.__version__}, {jax.device_count()} {jax.devices()[0].platform} devices")
    header = (
        f"{'kind':<8} {'depth':>5} {'scan':>5} {'mesh':<24} {'compile_s':>9} {'step_ms':>8} "
        f"{'bytes/device':>12} {'bytes total':>11}"
    )
    print(header)
    print("-" * len(header))
    for r in rows:
        step_ms = None if r["step_s"] is None else r["step_s"] * 1e3
        print(
            f"{r['kind']:<8} {r['depth']:>5} {str(r['scan']):>5} {r['mesh']:<24} "
            f"{r['compile_s']:>9.2f} {fmt(step_ms, '8.2f'):>8} "
            f"{r['bytes_per_device']:>12,} {r['bytes_total']:>11,}"
        )
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2) + "\n")


if __name__ == "__main__":
    main()
