#!/usr/bin/env bash
# A Cloud TPU VM slice: create it, copy this checkout to every worker and install
# mmjax[tpu], run the same command on all workers (--worker=all), delete it.
#
#   launch/tpu_pod.sh create NAME ZONE ACCELERATOR   # e.g. my-pod us-central2-b v4-32
#   launch/tpu_pod.sh setup  NAME ZONE               # copy the repo, pip install '.[tpu]'
#   launch/tpu_pod.sh compile NAME ZONE [mmjax train args...]  # `mmjax compile` only
#   launch/tpu_pod.sh train  NAME ZONE [mmjax train args...]
#   launch/tpu_pod.sh delete NAME ZONE
#
# `train` first runs `mmjax compile` for the slice's topology (its accelerator type, from
# gcloud) on worker 0, and starts the job only if the step fits every chip's HBM
# (SKIP_COMPILE=1 skips it). Each worker is one JAX process; jax.distributed finds the
# others from the TPU metadata. The workdir must be gs:// (checkpoints, metrics.jsonl,
# TensorBoard and config.json go there from the workers, and a restarted slice resumes
# from it; mmjax[tpu] brings gcsfs), e.g.
#   launch/tpu_pod.sh train my-pod us-central2-b --config configs/pod.py:clip_b16,v5e-256 \
#       --workdir gs://my-bucket/runs/b16 --config.data.source='wds:gs://my-bucket/shards/{00000..01023}.tar'
set -euo pipefail
usage() { sed -n '2,20p' "$0"; exit 2; }
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
  compile|train)
    # `mmjax compile` takes the train arguments without --workdir and the multi-process flags.
    compile_args=() skip=0
    for a in "$@"; do
      if ((skip)); then skip=0; continue; fi
      case "$a" in
        --workdir|--coordinator|--num_processes|--process_id) skip=1 ;;
        --workdir=*|--coordinator=*|--num_processes=*|--process_id=*) ;;
        *) compile_args+=("$a") ;;
      esac
    done
    if [[ "$action" == compile || -z "${SKIP_COMPILE:-}" ]]; then
      accelerator=$(tpu describe "$name" --format='value(acceleratorType)')
      tpu ssh "$name" --worker=0 --command \
        "cd ~/$REMOTE_DIR && . .venv/bin/activate && mmjax compile --topology $accelerator $(printf '%q ' "${compile_args[@]}")"
    fi
    [[ "$action" == train ]] || exit 0
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
