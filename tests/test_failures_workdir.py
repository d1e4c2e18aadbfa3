"""Misuse of a run's workdir, as a user would do it through the CLI: two runs on one
workdir, a double Ctrl-C during a save, retention keys that would delete everything,
resuming with another config or from a damaged checkpoint."""

from __future__ import annotations

import json
import os
import resource
import signal
import subprocess
import time
from pathlib import Path

import pytest

from mmjax.cli.app import main
from mmjax.train.checkpoint import read_state
from mmjax.train.loop import train
from tests.conftest import REPO, train_cmd
from tests.test_failures import (
    ENV,
    _assert_same_params,
    _config,
    _is_tmp_save,
    _kill,
    _start,
    _steps,
    _wait_for,
)
from tests.test_train import _rows


def _run(cmd: list[str], timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, cwd=REPO, env=ENV, capture_output=True, text=True, timeout=timeout)


def test_second_run_on_a_workdir_refuses_at_once_and_the_first_keeps_its_checkpoints(tmp_path):
    ckpt = tmp_path / "checkpoints"
    first = _start(tmp_path, 100_000)
    try:
        lock = tmp_path / ".mmjax.lock"
        _wait_for(first, lambda: lock.is_file() and lock.stat().st_size > 0, timeout=300)
        second = _run(train_cmd(tmp_path, 30), timeout=120)
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


def _saves_in_flight(ckpt: Path) -> list[int]:
    """Steps whose ``<step>.orbax-checkpoint-tmp*`` directory exists (being written)."""
    try:
        names = [e.name for e in os.scandir(ckpt) if "orbax-checkpoint-tmp" in e.name]
    except FileNotFoundError:
        return []
    return [int(n.partition(".")[0]) for n in names]


def _double_ctrl_c(workdir: Path) -> tuple[subprocess.Popen, str, list[int]] | None:
    """Ctrl-C, then a second one while the stop's save is being written; ``None`` when the
    save finished (and the run exited) before it was seen in flight: a tiny model's save
    takes milliseconds, and 1 in 3 times on the idle 2-core EPYC it was over first."""
    ckpt = workdir / "checkpoints"
    proc = _start(workdir, 100_000)
    in_flight: list[int] = []
    try:
        _wait_for(proc, lambda: len(_steps(ckpt)) >= 1, timeout=300)
        proc.send_signal(signal.SIGINT)  # stop after this step and save
        time.sleep(0.5)  # two signals at once would be handled as one
        # The second Ctrl-C while the stop's save is being written (the old code lost it:
        # the KeyboardInterrupt landed in the wait for the save and the process exited).
        deadline = time.time() + 60
        while not in_flight.extend(_saves_in_flight(ckpt)) and not in_flight:
            if proc.poll() is not None:
                return None
            assert time.time() < deadline, "timed out waiting for the stop's save"
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=120)
    finally:
        _kill(proc)
    return proc, out, in_flight


def test_double_ctrl_c_while_a_save_is_in_flight_commits_that_save(tmp_path):
    for attempt in range(5):  # until the second Ctrl-C meets a save in flight
        ran = _double_ctrl_c(tmp_path / str(attempt))
        if ran is not None:
            break
    assert ran is not None, "5 runs finished their stop's save before it was seen in flight"
    proc, out, in_flight = ran
    ckpt = tmp_path / str(attempt) / "checkpoints"
    assert proc.returncode == 130, out[-2000:]  # mmjax.errors: interrupted
    assert not _is_tmp_save(ckpt)
    for step in in_flight:  # the save that was being written is committed and readable
        assert step in _steps(ckpt), (in_flight, _steps(ckpt))
        assert int(read_state(ckpt / str(step))["step"]) == step


def _largest_file(root: Path) -> Path:
    return max((p for p in root.rglob("*") if p.is_file()), key=lambda p: p.stat().st_size)


def test_resume_checks_the_config_and_falls_back_to_the_latest_intact_step(
    tiny_config, tmp_path, capsys
):
    """A changed lr is refused naming the key (config.json kept); a changed width names
    the params; a truncated latest checkpoint (CLI) and a corrupt iterator state (in
    process) each resume from the step before, ending bit-identical to the straight run."""
    steps, ckpt = 40, tmp_path / "checkpoints"
    config = _config(tiny_config, steps)
    train(config, tmp_path)
    final = read_state(ckpt / str(steps))["params"]
    config_json = (tmp_path / "config.json").read_text()

    # The two refusals through the CLI's main in this process (no interpreter start-up):
    # its exit code and the one line it prints are what `mmjax train` exits with.
    capsys.readouterr()
    args = train_cmd(tmp_path, steps)[3:]  # after `python -m mmjax.cli`
    assert main(args + ["--config.optim.lr=0.001"]) == 4  # mmjax.errors: cannot resume
    err = capsys.readouterr().err
    assert "optim.lr: 0.005 -> 0.001" in err and "allow_config_change" in err
    assert "Traceback" not in err
    assert (tmp_path / "config.json").read_text() == config_json

    wide = ["--config.model.image.width=48", "--config.train.allow_config_change=true"]
    assert main(args + wide) == 4, capsys.readouterr().err[-2000:]
    err = capsys.readouterr().err
    assert "does not fit this model: params/image/" in err
    assert "saved (32,), config (48,)" in err and "Traceback" not in err

    with _largest_file(ckpt / str(steps) / "state").open("r+b") as f:  # a truncated write
        f.truncate(f.seek(0, 2) // 2)
    resumed = _run(train_cmd(tmp_path, steps), timeout=300)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert f"skipping checkpoint step {steps}: it does not restore" in resumed.stdout
    assert f"resumed from {ckpt} at step {steps - 10}" in resumed.stdout
    assert (tmp_path / "checkpoints-unreadable" / str(steps)).is_dir()  # kept, not deleted
    _assert_same_params(read_state(ckpt / str(steps))["params"], final)

    (ckpt / str(steps) / "data" / "process_0-of-1.json").write_text('{"next_index": ')
    train(config, tmp_path)
    _assert_same_params(read_state(ckpt / str(steps))["params"], final)

    capsys.readouterr()
    assert train(_config(tiny_config, steps - 10), tmp_path) == {}  # a finished run says so
    out = capsys.readouterr().out
    assert f"resuming step {steps} with changed settings: train.steps: {steps} -> 30" in out
    assert f"the checkpoint is at step {steps} and config.train.steps is 30: nothing" in out


def _small_files() -> None:
    """In the child: writes past 100 kB fail with EFBIG (a full disk, for one process)."""
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (100_000, 100_000))


def test_failed_async_save_stops_at_once_with_one_line_and_keeps_the_last_checkpoint(tmp_path):
    ckpt = tmp_path / "checkpoints"
    cmd = train_cmd(tmp_path, 60) + ["--config.train.log_every=1"]
    proc = subprocess.run(
        cmd, cwd=REPO, env=ENV, capture_output=True, text=True, timeout=300, preexec_fn=_small_files
    )
    assert proc.returncode == 9, proc.stderr[-3000:]  # mmjax.errors: a save failed
    errors = [line for line in proc.stderr.splitlines() if line.startswith("mmjax: error:")]
    assert len(errors) == 1 and "saving a checkpoint to" in errors[0]
    # Which save hits the limit first depends on how well the state compresses; the line
    # names what is on disk, and what is there reads back.
    kept = _steps(ckpt)
    if kept:
        assert f"checkpoint step {max(kept)} is the latest intact one" in errors[0]
        assert int(read_state(ckpt / str(max(kept)))["step"]) == max(kept)
    else:
        assert "checkpoint none was kept" in errors[0]
    # No traceback through mmjax (asyncio may still print "Event loop is closed" from
    # orbax's abandoned save thread at interpreter exit).
    assert (
        "/mmjax/train/loop.py" not in proc.stderr
        and "/mmjax/train/checkpoint.py" not in proc.stderr
    )
    last = max(r["step"] for r in _rows(tmp_path) if "loss" in r)
    assert last < 60  # stopped soon after the failed save, not at the end
