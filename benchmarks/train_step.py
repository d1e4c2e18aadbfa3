"""Train-step speed of a config: compile time, step time, samples/s, FLOPs and MFU.

    python benchmarks/train_step.py [--config FILE[:ARG]] [--batch N ...] [--json PATH]
        [--config.KEY=VALUE ...]

The device's matmul peak is measured in the same run (a large ``jnp.dot`` in
the model's compute dtype), so MFU compares the step with what this machine
does right now, not with a datasheet. The step is the trainer's own jitted
step (``mmjax.train.loop.make_train_step``) on one fixed batch from the real input
pipeline, timed after warm-up with the result blocked on each step.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import flax.linen as nn
import jax
import jax.numpy as jnp

from mmjax import config as config_lib
from mmjax.cli.app import _split_overrides
from mmjax.data.pipeline import train_dataset
from mmjax.data.tokenizer import load_tokenizer
from mmjax.flops import two_tower_train_flops
from mmjax.models.towers import dtype_from_name
from mmjax.optim.optimizer import make_optimizer
from mmjax.parallel import sharding
from mmjax.tasks import build_task
from mmjax.train.loop import init_train_state, make_train_step


def matmul_peak(dtype: jnp.dtype, n: int = 2048, repeats: int = 5) -> float:
    """Best FLOP/s of an ``[n, n] @ [n, n]`` matmul in ``dtype`` (after warm-up)."""
    a = jax.random.normal(jax.random.PRNGKey(0), (n, n), dtype)
    b = jax.random.normal(jax.random.PRNGKey(1), (n, n), dtype)
    dot = jax.jit(jnp.dot)
    dot(a, b).block_until_ready()
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        dot(a, b).block_until_ready()
        best = min(best, time.perf_counter() - t0)
    return 2 * n**3 / best


def compile_step(config, batch: int, plan=None):
    """``(compiled step, state, data, compile_s)`` for ``config`` at global ``batch``: the
    trainer's own jitted step (with ``plan``'s frozen params, if given) on one real batch."""
    config = config_lib.apply_overrides(config, [f"train.batch_size={batch}"])
    mesh = sharding.make_mesh(config.mesh)
    rules = sharding.logical_rules(config.mesh)
    task = build_task(config)
    tx, schedule = make_optimizer(
        config.optim, max(config.train.steps, config.optim.warmup_steps + 1), plan
    )
    state, shardings = init_train_state(task, tx, mesh, rules, 0, plan)
    tokenizer = load_tokenizer(config.data.tokenizer, config.model.text.context_length)
    local = next(iter(train_dataset(config.data, tokenizer, batch, 0)))
    data = sharding.global_batch(local, mesh)
    with jax.set_mesh(mesh), nn.logical_axis_rules(rules):
        step = jax.jit(
            make_train_step(task, tx, schedule),
            in_shardings=(shardings, sharding.batch_sharding(mesh)),
            out_shardings=(shardings, sharding.replicated(mesh)),
            donate_argnums=0,
        )
        t0 = time.perf_counter()
        compiled = step.lower(state, data).compile()
        compile_s = time.perf_counter() - t0
    return compiled, state, data, compile_s


def time_step(compiled, state, data, steps: int, warmup: int = 3) -> tuple[list[float], object]:
    """``(seconds of each step, final state)``, each step blocked on, after ``warmup``."""
    for _ in range(warmup):
        state, metrics = compiled(state, data)
    jax.block_until_ready(metrics)
    times = []
    for _ in range(steps):
        t0 = time.perf_counter()
        state, metrics = compiled(state, data)
        jax.block_until_ready(metrics)
        times.append(time.perf_counter() - t0)
    return times, state


def print_table(header: str, lines: list[str], rows: list[dict], json_path: Path | None) -> None:
    """Prints ``header``, a rule and ``lines``; writes ``rows`` to ``json_path`` if given."""
    print(header)
    print("-" * len(header))
    for line in lines:
        print(line)
    if json_path:
        json_path.write_text(json.dumps(rows, indent=2) + "\n")


def bench(config, batch: int, steps: int) -> dict:
    compiled, state, data, compile_s = compile_step(config, batch)
    times, _ = time_step(compiled, state, data, steps)
    step_s = statistics.median(times)
    return {
        "compile_s": compile_s,
        "step_s": step_s,
        "samples_per_s": batch / step_s,
        "flops_per_step": two_tower_train_flops(config.model, batch),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--config", default=None, help="config FILE[:ARG] (default: clip_synthetic)"
    )
    parser.add_argument(
        "--batch",
        type=int,
        nargs="+",
        default=None,
        help="batch sizes (default: the config's train.batch_size)",
    )
    parser.add_argument("--steps", type=int, default=20, help="timed steps per row")
    parser.add_argument("--json", type=Path, help="also write the rows here as a JSON list")
    rest, overrides = _split_overrides(__import__("sys").argv[1:])
    args = parser.parse_args(rest)
    config = config_lib.apply_overrides(config_lib.load_config(args.config), overrides)
    name = Path((args.config or "configs/clip_synthetic.py").partition(":")[0]).stem
    if args.config and ":" in args.config:
        name += ":" + args.config.partition(":")[2]
    peak = matmul_peak(dtype_from_name(config.model.dtype))
    device = jax.devices()[0].device_kind
    rows = []
    for batch in args.batch or [config.train.batch_size]:
        r = bench(config, batch, args.steps)
        r = {
            "config": name,
            "batch": batch,
            **r,
            "peak_flops": peak,
            "mfu": r["flops_per_step"] / r["step_s"] / peak,
        }
        rows.append(r)
    print(
        f"device: {device} x{jax.device_count()}, jax {jax.__version__}, "
        f"compute dtype {config.model.dtype}, matmul peak {peak / 1e9:.0f} GFLOP/s"
    )
    header = (
        f"{'config':<20} {'batch':>6} {'compile s':>10} {'step ms':>9} {'samples/s':>10} "
        f"{'GFLOP/step':>11} {'GFLOP/s':>8} {'MFU':>6}"
    )
    lines = [
        f"{r['config']:<20} {r['batch']:>6} {r['compile_s']:>10.1f} {r['step_s'] * 1e3:>9.1f} "
        f"{r['samples_per_s']:>10.0f} {r['flops_per_step'] / 1e9:>11.2f} "
        f"{r['flops_per_step'] / r['step_s'] / 1e9:>8.1f} {r['mfu']:>6.1%}"
        for r in rows
    ]
    print_table(header, lines, rows, args.json)


if __name__ == "__main__":
    main()
