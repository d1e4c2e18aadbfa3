#!/usr/bin/env bash
# Train on this machine (CPU or its GPUs) with the XLA settings that matter on GPU.
#   launch/local.sh --config configs/clip_synthetic.py --workdir runs/clip [--config.KEY=VALUE ...]
set -euo pipefail
if command -v nvidia-smi >/dev/null 2>&1; then
  # Overlap collectives with compute; let JAX take most of GPU memory up front.
  export XLA_FLAGS="${XLA_FLAGS:-} --xla_gpu_enable_latency_hiding_scheduler=true"
  export XLA_PYTHON_CLIENT_MEM_FRACTION="${XLA_PYTHON_CLIENT_MEM_FRACTION:-0.9}"
fi
exec mmjax train "$@"
