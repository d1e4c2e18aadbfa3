"""Errors a user can act on: one ``mmjax: error:`` line and an exit code per kind, the
traceback only with ``--debug`` / ``MMJAX_DEBUG=1``; SIGTERM during start-up ends cleanly."""

from __future__ import annotations

import os
import signal
import subprocess

from tests.conftest import CONFIG, REPO, train_cmd
from tests.test_failures import ENV, _kill, _steps, _wait_for


def _mmjax(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    cmd = [*train_cmd(REPO / "unused", 1)[:3], *args]  # python -m mmjax.cli.app ...
    return subprocess.run(
        cmd, cwd=REPO, env=env or ENV, capture_output=True, text=True, timeout=120
    )


def _error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("mmjax:")]


def test_config_error_is_one_line_and_the_traceback_needs_debug(tmp_path):
    args = ("train", "--config", f"{CONFIG}:tiny", "--workdir", str(tmp_path))
    plain = _mmjax(*args, "--config.train.max_checkpoints=0")
    assert plain.returncode == 2
    assert _error_lines(plain.stderr) == [
        "mmjax: error: config.train.max_checkpoints must be an integer >= 1 (how many recent "
        "checkpoints are kept; the latest is what resumes), got 0"
    ]
    assert "Traceback" not in plain.stderr
    debug = _mmjax(*args, "--config.train.max_checkpoints=0", "--debug")
    assert debug.returncode == 2 and "Traceback" in debug.stderr
    env = _mmjax(*args, "--config.optim.lr=-1.0", env=dict(ENV, MMJAX_DEBUG="1"))
    assert env.returncode == 2 and "Traceback" in env.stderr and "config.optim.lr" in env.stderr
    data = _mmjax("data", "prepare", "--source", "files:/nonexistent.jsonl", "--out", str(tmp_path))
    assert data.returncode == 5  # bad data
    assert _error_lines(data.stderr) == [
        "mmjax: error: config.data.source files:/nonexistent.jsonl: no such file"
    ]


def test_sigterm_during_start_up_exits_cleanly(tmp_path):
    proc = subprocess.Popen(
        train_cmd(tmp_path, 50),
        cwd=REPO,
        env=ENV,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        lock = tmp_path / ".mmjax.lock"  # written as train() starts, long before step 1
        _wait_for(proc, lambda: lock.is_file() and lock.stat().st_size > 0, timeout=120)
        os.kill(proc.pid, signal.SIGTERM)
        _, err = proc.communicate(timeout=120)
    finally:
        _kill(proc)
    assert proc.returncode == 143, err[-2000:]
    assert _error_lines(err) == [
        "mmjax: stopped by SIGTERM before training started; nothing to save"
    ]
    assert "Traceback" not in err and not _steps(tmp_path / "checkpoints")
