#!/usr/bin/env bash
# One machine, all of its GPUs (or its CPU), one process: every local device joins the mesh.
#   launch/gpu_local.sh --config configs/clip_synthetic.py --workdir runs/clip [--config.KEY=VALUE ...]
set -euo pipefail
if command -v nvidia-smi >/dev/null 2>&1; then
  # Overlap collectives with compute, and let JAX take most of GPU memory up front
  # (its default 75% leaves room that a training run does not need).
  export XLA_FLAGS="${XLA_FLAGS:-} --xla_gpu_enable_latency_hiding_scheduler=true"
  export XLA_PYTHON_CLIENT_MEM_FRACTION="${XLA_PYTHON_CLIENT_MEM_FRACTION:-0.9}"
fi
exec mmjax train "$@"
