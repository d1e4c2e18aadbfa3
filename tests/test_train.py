"""End-to-end training on the built-in data: loss falls, metrics are written, runs resume."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest

from mmjax import config as config_lib
from mmjax.train.checkpoint import latest_step_dir, read_state
from mmjax.train.loop import train
from tests.conftest import CONFIG, REPO, train_cmd


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


def test_killed_run_resumes_from_last_checkpoint(tiny_config, tmp_path):
    """Kill -9 a run after its first checkpoint; the restart continues the step counter
    and ends with exactly the params of an uninterrupted run (run in this process, on the
    config the command line builds: test_failures relies on the same equivalence)."""
    steps = 100  # 9 checkpoints after the first: time enough to kill it (test_failures)
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    killed_dir = tmp_path / "killed"
    proc = subprocess.Popen(
        train_cmd(killed_dir, steps),
        cwd=REPO,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        deadline = time.time() + 300  # start-up and compile, on a loaded CPU
        ckpt = killed_dir / "checkpoints"
        while time.time() < deadline and proc.poll() is None:
            if ckpt.is_dir() and any(p.name.isdigit() for p in ckpt.iterdir()):
                break
            time.sleep(0.05)
        assert proc.poll() is None, "the run ended before it could be killed"
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=30)
    saved = [int(p.name) for p in ckpt.iterdir() if p.name.isdigit()]
    assert saved and max(saved) < steps
    before = _rows(killed_dir)

    done = subprocess.run(
        train_cmd(killed_dir, steps),
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    resumed_at = max(saved)
    assert f"resumed from {ckpt} at step {resumed_at}" in done.stdout
    after = _rows(killed_dir)[len(before) :]
    assert after[0]["step"] == resumed_at + 10  # continues, does not restart at 0
    assert after[-1]["step"] == steps

    straight_dir = tmp_path / "straight"
    cli = [
        a.removeprefix("--config.")
        for a in train_cmd(straight_dir, steps)
        if a.startswith("--config.")
    ]
    train(config_lib.apply_overrides(tiny_config, cli), straight_dir)
    a, b = _final_params(killed_dir), _final_params(straight_dir)
    flat_a = {k: v for k, v in _flatten(a)}
    flat_b = {k: v for k, v in _flatten(b)}
    assert flat_a.keys() == flat_b.keys()
    for k in flat_a:
        np.testing.assert_array_equal(flat_a[k], flat_b[k], err_msg=k)


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
