"""``mmjax eval --workdir RUN [--config.KEY=VALUE ...] [--out results.json]``: eval only.

Restores the run's latest checkpoint (or the step directory given; EMA params when the
run kept an EMA), rebuilds its evaluators from the run's saved config with the overrides
applied (``config.evals``, or ``--config.data.eval_source=...`` for another eval set) and
prints one JSON object: ``step``, ``checkpoint`` and every ``eval/...`` metric; ``--out``
also writes it to a file.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any


def add_parser(sub: Any) -> None:
    p = sub.add_parser("eval", help="evaluate a run's checkpoint (its evaluators, no training)")
    p.add_argument("--workdir", required=True, help="run workdir, checkpoints/ or a step dir")
    p.add_argument("--out", help="also write the results JSON here")


def run_eval(workdir: str | Path, overrides: list[str]) -> dict[str, Any]:
    """``{'step', 'checkpoint', 'eval/...': value}`` for the run at ``workdir``."""
    import flax.linen as nn
    import jax

    from mmjax import config as config_lib
    from mmjax.evaluation.evaluators import build_evaluators, run_evaluators
    from mmjax.inference.run_loading import load_run
    from mmjax.parallel import sharding

    run = load_run(workdir)
    if "evals" not in run.config:  # runs saved before config.evals existed
        run.config.evals = []
    config = config_lib.apply_overrides(run.config, overrides)
    mesh = sharding.make_mesh(config.mesh)
    rules = sharding.logical_rules(config.mesh)
    with jax.set_mesh(mesh), nn.logical_axis_rules(rules):
        evaluators = build_evaluators(config, mesh)
        params = jax.device_put(run.params, sharding.replicated(mesh))
        row = run_evaluators(evaluators, params, mesh)
    return {"step": run.step, "checkpoint": str(run.step_dir), **row}


def main(args: argparse.Namespace, overrides: list[str]) -> int:
    result = run_eval(args.workdir, overrides)
    text = json.dumps(result, sort_keys=True)
    print(text)
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=2, sort_keys=True) + "\n")
    return 0
