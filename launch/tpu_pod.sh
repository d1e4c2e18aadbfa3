#!/usr/bin/env bash
# A Cloud TPU VM slice: create it, copy this checkout to every worker and install
# mmjax[tpu], run the same command on all workers (--worker=all), delete it.
#
#   launch/tpu_pod.sh create NAME ZONE ACCELERATOR   # e.g. my-pod us-central2-b v4-32
#   launch/tpu_pod.sh setup  NAME ZONE               # copy the repo, pip install '.[tpu]'
#   launch/tpu_pod.sh train  NAME ZONE [mmjax train args...]
#   launch/tpu_pod.sh delete NAME ZONE
#
# Each worker is one JAX process; jax.distributed finds the others from the TPU
# metadata. Use a gs:// workdir (orbax writes there from every worker), e.g.
#   launch/tpu_pod.sh train my-pod us-central2-b --config configs/clip_synthetic.py \
#       --workdir gs://my-bucket/runs/clip
set -euo pipefail
usage() { sed -n '2,14p' "$0"; exit 2; }
[[ $# -ge 3 ]] || usage
action=$1 name=$2 zone=$3
shift 3
RUNTIME=${TPU_RUNTIME:-tpu-ubuntu2204-base}
REMOTE_DIR=${REMOTE_DIR:-mmjax}
tpu() { gcloud compute tpus tpu-vm "$@" --zone "$zone"; }
case "$action" in
  create)
    [[ $# -ge 1 ]] || usage
    tpu create "$name" --accelerator-type "$1" --version "$RUNTIME"
    ;;
  setup)
    repo=$(cd "$(dirname "$0")/.." && pwd)
    tpu ssh "$name" --worker=all --command "rm -rf ~/$REMOTE_DIR && mkdir -p ~/$REMOTE_DIR"
    tpu scp --recurse --worker=all "$repo"/{pyproject.toml,README.md,mmjax,configs} "$name:~/$REMOTE_DIR/"
    tpu ssh "$name" --worker=all --command \
      "cd ~/$REMOTE_DIR && python3 -m venv .venv && . .venv/bin/activate && pip install -q -e '.[tpu]'"
    ;;
  train)
    args=$(printf '%q ' "$@")
    # All workers start the same program; SIGTERM on preemption reaches each of them.
    tpu ssh "$name" --worker=all --command \
      "cd ~/$REMOTE_DIR && . .venv/bin/activate && mmjax train $args"
    ;;
  delete)
    tpu delete "$name" --quiet
    ;;
  *) usage ;;
esac
