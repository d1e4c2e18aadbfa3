"""Misuse of a run's workdir, as a user would do it through the CLI: two runs on one
workdir, a double Ctrl-C during a save, retention keys that would delete everything,
resuming with another config or from a damaged checkpoint."""

from __future__ import annotations

import json
import signal
import subprocess

import pytest

from mmjax.train import train
from tests.conftest import REPO
from tests.test_failures import ENV, _is_tmp_save, _kill, _start, _steps, _wait_for
from tests.test_train import _rows, _train_cmd


def _run(cmd: list[str], timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, cwd=REPO, env=ENV, capture_output=True, text=True, timeout=timeout)


def test_second_run_on_a_workdir_refuses_at_once_and_the_first_keeps_its_checkpoints(tmp_path):
    ckpt = tmp_path / "checkpoints"
    first = _start(tmp_path, 100_000)
    try:
        lock = tmp_path / ".mmjax.lock"
        _wait_for(first, lambda: lock.is_file() and lock.stat().st_size > 0, timeout=300)
        second = _run(_train_cmd(tmp_path, 30), timeout=120)
        _wait_for(first, lambda: len(_steps(ckpt)) >= 1, timeout=300)
        first.send_signal(signal.SIGTERM)
        out, _ = first.communicate(timeout=60)
    finally:
        _kill(first)
    assert second.returncode == 3  # mmjax.errors: workdir in use
    assert "mmjax: error: workdir " in second.stderr
    assert f"is in use by another run (PID {first.pid} on host" in second.stderr
    assert "Traceback" not in second.stderr
    assert first.returncode == 0, out[-2000:]
    assert "checkpoint saved" in out
    assert not _is_tmp_save(ckpt) and _steps(ckpt)
    # Nothing of the second run reached the workdir: the first's config, one step sequence.
    assert json.loads((tmp_path / "config.json").read_text())["train"]["steps"] == 100_000
    steps = [r["step"] for r in _rows(tmp_path) if "loss" in r]
    assert steps == sorted(set(steps))


def test_checkpoints_path_that_is_a_file_is_an_error(tiny_config, tmp_path):
    (tmp_path / "checkpoints").write_text("not a directory")
    with pytest.raises(RuntimeError, match="checkpoints must be a directory"):
        train(tiny_config, tmp_path)
