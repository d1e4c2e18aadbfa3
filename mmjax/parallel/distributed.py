"""Multi-host start-up: ``jax.distributed.initialize`` from flags or the environment.

JAX's multi-controller runtime is the distributed engine: every host runs the
same program on its local devices, and ``jax.jit`` over a global mesh does the
rest. This module only decides whether and how to connect the processes.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

import jax

ENV_COORDINATOR = "MMJAX_COORDINATOR"
ENV_NUM_PROCESSES = "MMJAX_NUM_PROCESSES"
ENV_PROCESS_ID = "MMJAX_PROCESS_ID"


def detect(
    coordinator: str | None = None,
    num_processes: int | None = None,
    process_id: int | None = None,
    env: Mapping[str, str] = os.environ,
) -> dict[str, Any] | None:
    """The ``jax.distributed.initialize`` arguments for this process, or ``None`` for one process.

    In order: explicit arguments (or ``MMJAX_COORDINATOR`` / ``MMJAX_NUM_PROCESSES`` /
    ``MMJAX_PROCESS_ID``); a SLURM job step with more than one task; a multi-host TPU
    VM slice. In the last two cases JAX reads the cluster from the environment
    itself, so the arguments are empty.
    """
    coordinator = coordinator or env.get(ENV_COORDINATOR)
    if num_processes is None and env.get(ENV_NUM_PROCESSES):
        num_processes = int(env[ENV_NUM_PROCESSES])
    if process_id is None and env.get(ENV_PROCESS_ID):
        process_id = int(env[ENV_PROCESS_ID])
    explicit = (coordinator, num_processes, process_id)
    if any(v is not None for v in explicit):
        if any(v is None for v in explicit):
            raise ValueError(
                "multi-process runs need all of --coordinator, --num_processes and "
                f"--process_id (got coordinator={coordinator!r}, num_processes={num_processes}, "
                f"process_id={process_id})"
            )
        if not 0 <= process_id < num_processes:
            raise ValueError(f"--process_id {process_id} is outside [0, {num_processes})")
        return {
            "coordinator_address": coordinator,
            "num_processes": num_processes,
            "process_id": process_id,
        }
    if int(env.get("SLURM_NTASKS", "1")) > 1 and "SLURM_STEP_ID" in env:
        return {}
    hosts = env.get("TPU_WORKER_HOSTNAMES", "")
    if len([h for h in hosts.split(",") if h]) > 1:
        return {}
    return None


def initialize(
    coordinator: str | None = None, num_processes: int | None = None, process_id: int | None = None
) -> bool:
    """Connects this process to the others if it is one of several; returns whether it did.

    Must run before anything touches the devices.
    """
    kwargs = detect(coordinator, num_processes, process_id)
    if kwargs is None:
        return False
    jax.distributed.initialize(**kwargs)
    return True
