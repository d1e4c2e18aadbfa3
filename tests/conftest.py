"""Shared fixtures. Tests run on the CPU; multi-device cases use subprocesses with fake devices."""

from __future__ import annotations

import atexit
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import ml_collections
import pytest

os.environ.setdefault("JAX_PLATFORMS", "cpu")
# One persistent XLA compilation cache for the session, inherited by the subprocesses the
# tests start: many tests train the same tiny configs, and compiling is most of their time
# on a 2-core CPU. Set before jax is imported (jax reads these at import).
_XLA_CACHE = tempfile.mkdtemp(prefix="mmjax-test-xla-cache-")
atexit.register(shutil.rmtree, _XLA_CACHE, ignore_errors=True)
os.environ.setdefault("JAX_COMPILATION_CACHE_DIR", _XLA_CACHE)
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES", "0")

REPO = Path(__file__).resolve().parent.parent
CONFIG = REPO / "configs" / "clip_synthetic.py"


def synthetic_data_cfg(**kw: object) -> ml_collections.ConfigDict:
    """``config.data`` of the base config (the synthetic shapes) with ``kw`` set."""
    from mmjax import config_base

    cfg = config_base.data()
    cfg.update(kw)
    return cfg


def train_cmd(workdir: Path, steps: int, *extra: str) -> list[str]:
    """``mmjax train`` of the tiny default config as a subprocess command: ``steps`` steps,
    a checkpoint and a log line every 10, no eval; ``extra`` flags appended."""
    train = dict(steps=steps, checkpoint_every=10, eval_every=0, log_every=10)
    flags = [f"--config.train.{k}={v}" for k, v in train.items()]
    cli = [sys.executable, "-m", "mmjax.cli", "train", "--config", f"{CONFIG}:tiny"]
    return [*cli, "--workdir", str(workdir), *flags, *extra]


@pytest.fixture
def tiny_config():
    """The default config's ``tiny`` variant: a run of a few seconds."""
    from mmjax import config as config_lib

    return config_lib.load_config(f"{CONFIG}:tiny")


def run_python(code: str, devices: int = 1, timeout: float = 300) -> str:
    """Runs ``code`` in a fresh interpreter with ``devices`` fake CPU devices; returns stdout."""
    env = dict(
        os.environ,
        JAX_PLATFORMS="cpu",
        XLA_FLAGS=f"--xla_force_host_platform_device_count={devices}",
    )
    proc = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env=env,
        timeout=timeout,
        cwd=REPO,
    )
    if proc.returncode != 0:
        raise AssertionError(f"subprocess failed ({proc.returncode}):\n{proc.stderr[-4000:]}")
    return proc.stdout
