"""Multi-host start-up detection and the launch scripts."""

from __future__ import annotations

import subprocess

import pytest

from mmjax.parallel.distributed import detect
from tests.conftest import REPO


def test_single_process_by_default():
    assert detect(env={}) is None
    assert detect(env={"SLURM_NTASKS": "1", "SLURM_STEP_ID": "0"}) is None
    assert detect(env={"TPU_WORKER_HOSTNAMES": "10.0.0.2"}) is None


def test_explicit_flags_and_environment():
    want = {"coordinator_address": "127.0.0.1:1234", "num_processes": 2, "process_id": 1}
    assert detect("127.0.0.1:1234", 2, 1, env={}) == want
    env = {
        "MMJAX_COORDINATOR": "127.0.0.1:1234",
        "MMJAX_NUM_PROCESSES": "2",
        "MMJAX_PROCESS_ID": "1",
    }
    assert detect(env=env) == want


def test_cluster_environments_let_jax_detect():
    assert detect(env={"SLURM_NTASKS": "16", "SLURM_STEP_ID": "0"}) == {}
    assert detect(env={"TPU_WORKER_HOSTNAMES": "h0,h1,h2,h3"}) == {}


def test_incomplete_or_bad_flags_are_errors():
    with pytest.raises(ValueError, match="need all of --coordinator"):
        detect("127.0.0.1:1234", env={})
    with pytest.raises(ValueError, match="outside"):
        detect("127.0.0.1:1234", 2, 2, env={})


@pytest.mark.parametrize("script", ["gpu_local.sh", "tpu_pod.sh", "slurm.sbatch"])
def test_launch_scripts_parse(script):
    subprocess.run(["bash", "-n", str(REPO / "launch" / script)], check=True)


def test_tpu_pod_usage_without_arguments():
    proc = subprocess.run(
        ["bash", str(REPO / "launch" / "tpu_pod.sh")], capture_output=True, text=True, timeout=30
    )
    assert proc.returncode == 2 and "launch/tpu_pod.sh create NAME ZONE" in proc.stdout
