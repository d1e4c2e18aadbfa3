"""Step time and optimizer-state size of full fine-tuning vs a locked image tower vs heads only.

    python benchmarks/finetune.py [--config FILE[:ARG]] [--batch N] [--steps N] [--json PATH]
        [--config.KEY=VALUE ...]

The three variants differ only in ``config.optim.rules``, on the same model and the
same batch, in one run:

- ``full``: every param trains;
- ``image_locked``: the image tower and its projection are frozen (LiT);
- ``heads_only``: only the projections and the temperature train.

Frozen params get no gradient and no optimizer state, so the locked tower costs a
forward pass only. Each variant's step is the trainer's own jitted step, compiled
ahead of time; steps are timed in interleaved rounds (so load on the machine hits
every variant alike) and the median is reported.
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

import jax

from mmjax import config as config_lib
from mmjax.cli.app import _split_overrides
from mmjax.tasks import build_task
from mmjax.train.loop import make_plan

sys.path.insert(0, str(Path(__file__).resolve().parent))
from train_step import compile_step, print_table, time_step  # noqa: E402

VARIANTS = {
    "full": [(".*", {})],
    "image_locked": [("image/.*|image_proj/.*", None), (".*", {})],
    "heads_only": [("(image|text)_proj/.*|logit_(scale|bias)", {}), (".*", None)],
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--config", default=None, help="config FILE[:ARG] (default: clip_synthetic)"
    )
    parser.add_argument("--batch", type=int, default=None, help="default: train.batch_size")
    parser.add_argument("--steps", type=int, default=10, help="timed steps per variant per round")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved timing rounds")
    parser.add_argument("--json", type=Path, help="also write the rows here as a JSON list")
    rest, overrides = _split_overrides(sys.argv[1:])
    args = parser.parse_args(rest)
    config = config_lib.apply_overrides(config_lib.load_config(args.config), overrides)
    batch = args.batch or config.train.batch_size
    task = build_task(config)

    runs = {}
    for name, rules in VARIANTS.items():
        cfg = config_lib.apply_overrides(config, [])
        cfg.optim.rules = rules
        plan = make_plan(task, cfg.optim)
        compiled, state, data, compile_s = compile_step(cfg, batch, plan)
        runs[name] = dict(plan=plan, compiled=compiled, state=state, compile_s=compile_s)
        runs[name]["opt_state_bytes"] = sum(x.nbytes for x in jax.tree.leaves(state.opt_state))
    times: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(args.rounds):
        for name, run in runs.items():
            t, run["state"] = time_step(run["compiled"], run["state"], data, args.steps)
            times[name] += t

    rows = []
    for name, run in runs.items():
        plan = run["plan"]
        rows.append(
            {
                "variant": name,
                "step_s": statistics.median(times[name]),
                "opt_state_bytes": int(run["opt_state_bytes"]),
                "trainable_params": plan.num_params(plan.trainable),
                "frozen_params": plan.num_params(plan.frozen),
                "compile_s": run["compile_s"],
                "batch": batch,
            }
        )
    full = rows[0]
    print(f"device: {jax.devices()[0].device_kind} x{jax.device_count()}, jax {jax.__version__}")
    print(f"config: {args.config or 'clip_synthetic'} {' '.join(overrides)}, batch {batch}")
    header = (
        f"{'variant':<13} {'step ms':>8} {'vs full':>8} {'trainable':>11} {'frozen':>11} "
        f"{'opt state MiB':>13} {'compile s':>10}"
    )
    lines = [
        f"{r['variant']:<13} {r['step_s'] * 1e3:>8.1f} {r['step_s'] / full['step_s']:>7.2f}x "
        f"{r['trainable_params']:>11,} {r['frozen_params']:>11,} "
        f"{r['opt_state_bytes'] / 2**20:>13.2f} {r['compile_s']:>10.1f}"
        for r in rows
    ]
    print_table(header, lines, rows, args.json)


if __name__ == "__main__":
    main()
