"""Failures that must never lose work: kill -9 at any moment (also mid-save), SIGTERM /
Ctrl-C, corrupt records, non-finite steps."""

from __future__ import annotations

import io
import os
import random
import signal
import subprocess
import time
from pathlib import Path

import numpy as np
import PIL.Image
import pytest

from mmjax import config as config_lib
from mmjax.data.pipeline import BadRecordError
from mmjax.data.transforms import BadRecord, to_rgb_uint8
from mmjax.train.checkpoint import read_state
from mmjax.train.faults import NonFiniteError
from mmjax.train.loop import train
from mmjax.train.preemption import StopRequest
from tests.conftest import REPO, train_cmd
from tests.test_train import _final_params, _flatten, _rows

STEPS = 100
ENV = dict(os.environ, JAX_PLATFORMS="cpu")


def _overrides(steps: int) -> list[str]:
    """The config ``train_cmd`` runs, for in-process ``train``."""
    cmd = train_cmd(Path("x"), steps)
    return [a.removeprefix("--config.") for a in cmd if a.startswith("--config.")]


def _config(tiny_config, steps: int, *extra: str):
    return config_lib.apply_overrides(tiny_config, [*_overrides(steps), *extra])


def _start(workdir: Path, steps: int, *extra: str) -> subprocess.Popen:
    return subprocess.Popen(
        train_cmd(workdir, steps) + [f"--config.{e}" for e in extra],
        cwd=REPO,
        env=ENV,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        start_new_session=True,
    )


def _steps(ckpt: Path) -> list[int]:
    return sorted(int(p.name) for p in ckpt.iterdir() if p.name.isdigit()) if ckpt.is_dir() else []


def _kill(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)


def _wait_for(proc: subprocess.Popen, ready, timeout: float = 60, poll: float = 0.002) -> None:
    deadline = time.time() + timeout
    while not ready():
        assert proc.poll() is None, "the run ended before the event it waits for"
        assert time.time() < deadline, "timed out waiting for the run"
        time.sleep(poll)


def _assert_same_params(a: dict, b: dict) -> None:
    flat_a, flat_b = dict(_flatten(a)), dict(_flatten(b))
    assert flat_a.keys() == flat_b.keys()
    for k in flat_a:
        np.testing.assert_array_equal(flat_a[k], flat_b[k], err_msg=k)


@pytest.fixture(scope="module")
def straight_params(tmp_path_factory):
    """Final params of an uninterrupted run of ``STEPS`` steps."""
    workdir = tmp_path_factory.mktemp("straight")
    cfg = config_lib.load_config(f"{REPO / 'configs' / 'clip_synthetic.py'}:tiny")
    train(_config(cfg, STEPS), workdir)
    return _final_params(workdir)


def _is_tmp_save(ckpt: Path) -> bool:
    try:
        return any("orbax-checkpoint-tmp" in e.name for e in os.scandir(ckpt))
    except FileNotFoundError:
        return False


def test_kill_9_anywhere_then_resume_is_bit_identical(
    tiny_config, tmp_path, straight_params, capsys
):
    """Kill -9 after the 2nd checkpoint plus a random delay; restart and kill -9 again
    while orbax is writing a checkpoint (its ``*.orbax-checkpoint-tmp-*`` directory
    exists); the twice-restarted run says where it resumed, continues the step counter and
    ends with exactly the params of an uninterrupted one."""
    ckpt = tmp_path / "checkpoints"
    delay = random.Random().uniform(0.0, 0.4)
    for when in ("random_step", "during_async_save"):
        proc = _start(tmp_path, STEPS)
        try:
            first = max(_steps(ckpt), default=0)
            _wait_for(proc, lambda f=first: len([s for s in _steps(ckpt) if s > f]) >= 2)
            if when == "random_step":
                time.sleep(delay)
            else:
                _wait_for(proc, lambda: _is_tmp_save(ckpt), poll=0.0)
            assert proc.poll() is None, f"the run ended before it could be killed ({when})"
        finally:
            _kill(proc)
        saved = _steps(ckpt)
        assert saved and max(saved) < STEPS, (when, delay, saved)
    before = len(_rows(tmp_path))
    capsys.readouterr()
    train(_config(tiny_config, STEPS), tmp_path)
    resumed_at = max(saved)  # the newest committed step: a mid-save one is never restored
    assert f"resumed from {ckpt} at step {resumed_at}" in capsys.readouterr().out
    logged = [r["step"] for r in _rows(tmp_path)[before:] if "loss" in r]
    assert logged == list(range(resumed_at + 10, STEPS + 1, 10))  # continues, not from 0
    _assert_same_params(_final_params(tmp_path), straight_params)


def test_sigterm_saves_and_exits_0_then_resumes(tiny_config, tmp_path):
    ckpt = tmp_path / "checkpoints"
    proc = _start(tmp_path, 100_000)
    try:
        _wait_for(proc, lambda: len(_steps(ckpt)) >= 1)
        sent = time.time()
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=30)
        elapsed = time.time() - sent
    finally:
        _kill(proc)
    assert proc.returncode == 0
    assert elapsed < 10, elapsed  # one step plus one tiny save, with slack for a busy machine
    stopped = max(_steps(ckpt))
    assert f"stopped at step {stopped} (SIGTERM); checkpoint saved" in out
    assert not _is_tmp_save(ckpt)  # committed
    assert int(read_state(ckpt / str(stopped))["step"]) == stopped

    before = len(_rows(tmp_path))
    train(_config(tiny_config, stopped + 5, "train.log_every=1"), tmp_path)
    after = [r["step"] for r in _rows(tmp_path)[before:] if "loss" in r]
    assert after == list(range(stopped + 1, stopped + 6))  # continues from the saved step


def test_ctrl_c_stops_once_and_exits_on_the_second():
    before = signal.getsignal(signal.SIGINT)  # SIG_IGN when pytest runs as a background job
    with StopRequest() as stop:
        assert not stop.should_stop(1)
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(0.01)
        assert stop.should_stop(2) and stop.signal_name == "SIGINT"
        with pytest.raises(KeyboardInterrupt):
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(0.01)
    assert signal.getsignal(signal.SIGINT) is before


def test_corrupt_records_are_skipped_or_named(tiny_config, tmp_path):
    """5% corrupt records: 'skip' trains to the end and reports ~5% skipped (with
    keep_period and the best checkpoint wired in); 'fail' names the record."""
    config = _config(
        tiny_config,
        20,
        "data.synthetic_corrupt_fraction=0.05",
        "train.eval_every=10",
        "train.log_every=5",
        "train.max_checkpoints=1",
        "train.checkpoint_every=5",
        "train.keep_period=10",
        "train.best_metric=eval/i2t_r1",
    )
    train(config, tmp_path / "skip")
    rows = [r for r in _rows(tmp_path / "skip") if "loss" in r]
    assert rows[-1]["step"] == 20
    skipped = np.mean([r["data/skipped"] for r in rows])
    assert 0.02 < skipped < 0.10, skipped
    assert _steps(tmp_path / "skip" / "checkpoints") == [10, 20]
    assert len(_steps(tmp_path / "skip" / "best")) == 1

    config = config_lib.apply_overrides(config, ["data.bad_records=fail"])
    with pytest.raises(BadRecordError, match=r"bad record \d+ of SyntheticShapes"):
        train(config, tmp_path / "fail")


def test_images_in_other_modes_become_rgb_uint8():
    grey = np.arange(12, dtype=np.uint8).reshape(3, 4)
    for image in (
        grey,
        grey[..., None],
        np.dstack([grey, grey, grey, np.full_like(grey, 7)]),
        grey.astype(np.uint16) << 8,
    ):
        np.testing.assert_array_equal(to_rgb_uint8(image), np.dstack([grey] * 3))
    for mode, value in (("L", 12), ("RGBA", (12, 12, 12, 0)), ("I;16", 12 << 8)):
        buf = io.BytesIO()
        PIL.Image.new(mode, (4, 3), value).save(buf, "PNG")
        np.testing.assert_array_equal(to_rgb_uint8(buf.getvalue()), np.full((3, 4, 3), 12))
    for bad in (None, b"nope", np.zeros((3, 4, 2), np.uint8)):
        with pytest.raises(BadRecord):
            to_rgb_uint8(bad)


def test_nonfinite_step_is_skipped_or_stops(tiny_config, tmp_path):
    config = _config(tiny_config, 20, "train.debug_nan_step=7", "train.checkpoint_every=5")
    skip = config_lib.apply_overrides(config, ["train.nonfinite=skip_step", "train.log_every=5"])
    train(skip, tmp_path / "skip")
    rows = [r for r in _rows(tmp_path / "skip") if "loss" in r]
    assert sum(r["nonfinite_skips"] for r in rows) == 1 and rows[-1]["step"] == 20
    params = dict(_flatten(_final_params(tmp_path / "skip")))
    assert all(np.isfinite(v).all() for v in params.values())

    with pytest.raises(NonFiniteError, match="at step 7;.*checkpoint \\(step 5\\) is intact"):
        train(config, tmp_path / "stop")
    assert _steps(tmp_path / "stop" / "checkpoints") == [5]
    state = read_state(tmp_path / "stop" / "checkpoints" / "5")
    assert all(np.isfinite(v).all() for v in dict(_flatten(state["params"])).values())
