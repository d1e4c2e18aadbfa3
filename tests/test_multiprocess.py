"""A real multi-process run on this machine (loopback only, bounded time).

Two processes x two CPU devices each, joined by ``jax.distributed`` on 127.0.0.1,
train and checkpoint; the step-20 checkpoint then restores on one process x four
devices and continues to step 30 with the same loss and params as the
uninterrupted two-process run.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
from pathlib import Path

import numpy as np

from mmjax.train.checkpoint import read_state
from tests.conftest import REPO, train_cmd
from tests.test_train import _flatten

STEPS = 30


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _cmd(workdir: Path) -> list[str]:
    return train_cmd(workdir, STEPS, "--config.train.max_checkpoints=3")


def _env(devices: int) -> dict[str, str]:
    return dict(
        os.environ,
        JAX_PLATFORMS="cpu",
        XLA_FLAGS=f"--xla_force_host_platform_device_count={devices}",
    )


def _train_rows(workdir: Path) -> list[dict]:
    """The training rows of ``metrics.jsonl`` (eval rows left out)."""
    rows = [json.loads(x) for x in (workdir / "metrics.jsonl").read_text().splitlines()]
    return [r for r in rows if "loss" in r]


def _params(step_dir: Path) -> dict[str, np.ndarray]:
    return dict(_flatten(read_state(step_dir)["params"]))


def test_two_processes_then_resume_on_one(tmp_path):
    workdir = tmp_path / "run"
    port = _free_port()
    procs = [
        subprocess.Popen(
            _cmd(workdir)
            + [
                "--coordinator",
                f"127.0.0.1:{port}",
                "--num_processes",
                "2",
                "--process_id",
                str(i),
            ],
            cwd=REPO,
            env=_env(2),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for i in range(2)
    ]
    try:
        outputs = [p.communicate(timeout=240)[0] for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait(timeout=30)
    for p, out in zip(procs, outputs, strict=True):
        assert p.returncode == 0, out[-3000:]
    ckpt = workdir / "checkpoints"
    assert sorted(int(p.name) for p in ckpt.iterdir() if p.name.isdigit()) == [10, 20, 30]
    assert (ckpt / "20" / "data" / "process_1-of-2.json").is_file()
    rows = _train_rows(workdir)
    assert [r["step"] for r in rows] == [10, 20, 30]  # process 0 alone writes metrics
    want_loss = rows[-1]["loss"]
    want_params = _params(ckpt / "30")

    # Drop the last checkpoint and continue from step 20 on one process with 4 devices.
    shutil.rmtree(ckpt / "30")
    (workdir / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows[:2]))
    one = subprocess.run(
        _cmd(workdir), cwd=REPO, env=_env(4), capture_output=True, text=True, timeout=240
    )
    assert one.returncode == 0, one.stderr[-3000:]
    assert "at step 20" in one.stdout
    rows = _train_rows(workdir)
    assert rows[-1]["step"] == STEPS
    np.testing.assert_allclose(rows[-1]["loss"], want_loss, rtol=1e-5, atol=1e-6)
    got_params = _params(ckpt / "30")
    assert got_params.keys() == want_params.keys()
    for k in want_params:
        np.testing.assert_allclose(got_params[k], want_params[k], atol=1e-5, err_msg=k)
