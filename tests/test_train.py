"""End-to-end training on the built-in data: loss falls, metrics are written, runs resume."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from mmjax import config as config_lib
from mmjax.train.checkpoint import latest_step_dir, read_state
from mmjax.train.loop import train
from tests.conftest import CONFIG


def _rows(workdir: Path) -> list[dict]:
    return [json.loads(line) for line in (workdir / "metrics.jsonl").read_text().splitlines()]


def test_short_run_loss_falls_and_writes_metrics(tiny_config, tmp_path):
    config = config_lib.apply_overrides(
        tiny_config, ["train.steps=150", "train.log_every=30", "train.eval_every=75"]
    )
    result = train(config, tmp_path)
    rows = _rows(tmp_path)
    losses = [r["loss"] for r in rows if "loss" in r]
    assert len(losses) == 5
    assert losses[-1] < losses[0] - 0.2, losses
    for key in ("step", "loss", "lr", "steps_per_sec"):
        assert key in rows[0]
    evals = [r for r in rows if "eval/i2t_r1" in r]
    assert [r["step"] for r in evals] == [75, 150]
    for key in ("eval/i2t_r1", "eval/t2i_r1", "eval/i2t_r5", "eval/t2i_r5"):
        assert 0.0 <= evals[-1][key] <= 1.0
    assert result["eval/i2t_r5"] > 5 / 32  # above chance on 32 eval pairs
    assert list((tmp_path / "tensorboard").glob("events.out.tfevents.*"))
    assert json.loads((tmp_path / "config.json").read_text())["train"]["steps"] == 150
    assert sorted(int(p.name) for p in (tmp_path / "checkpoints").iterdir()) == [140, 150]


def _final_params(workdir: Path) -> dict:
    return read_state(latest_step_dir(workdir))["params"]


def _flatten(tree, prefix=""):
    for k, v in tree.items():
        if isinstance(v, dict):
            yield from _flatten(v, f"{prefix}{k}/")
        else:
            yield prefix + k, np.asarray(v)


@pytest.mark.parametrize("variant", ["siglip"])
def test_siglip_variant_trains(variant, tmp_path):
    config = config_lib.load_config(f"{CONFIG}:tiny,{variant}")
    config = config_lib.apply_overrides(config, ["train.steps=100", "train.eval_every=0"])
    train(config, tmp_path)
    losses = [r["loss"] for r in _rows(tmp_path) if "loss" in r]
    assert losses[-1] < losses[0]
