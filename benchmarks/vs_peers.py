"""Train-step throughput and MFU of mmjax against open_clip and transformers, in one run.

    python benchmarks/vs_peers.py [--configs b32 small] [--precision fp32 bf16]
        [--variant full locked] [--attention xla cudnn] [--json PATH] [--smoke]

The same CLIP architecture (``configs/clip_vit_b32.py``: OpenAI ViT-B/32, or ``small``:
64 px images, 8 px patches, width 256, 4 layers and 4 heads per tower, context 32,
vocab 1000, embed 256) is built in mmjax, in open_clip (``open_clip.CLIP``) and in
transformers (PyTorch ``CLIPModel``), with the same batch, AdamW settings, compute
precision and inputs. Each implementation first reports its parameter count (they
must agree), then each timing runs in its own subprocess, one after the other (torch's
OpenMP threads keep spinning after each op and would slow a JAX step in the same
process). A step is forward + CLIP loss + backward + AdamW update, timed after warm-up
as the median of device-synchronized steps. Each worker also measures its framework's
matmul peak in the compute dtype (a square ``[2048, 2048]`` matmul on CPU); MFU divides
the analytic FLOP/s (``mmjax.flops``) by the best peak any framework reached in this run,
so MFU ratios equal throughput ratios, and ``of own`` divides it by the row's own
framework's peak (mmjax by jax's, the peers by torch's): how much of the matmul speed its
framework offers a step turns into training, the figure that says whether a ratio comes
from the step or from the framework's matmul.

The peers run under ``--peer-python`` (default ``/work/peers-venv/bin/python``), a
separate environment with torch, open_clip and transformers; without it the peers are
skipped with a note. On a machine with an NVIDIA GPU (or ``--gpu``) the defaults become
bf16, XLA and cuDNN attention for mmjax, the XLA GPU flags in ``GPU_XLA_FLAGS``, 20
timed steps, and ``--json vs_peers_gpu.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
from pathlib import Path

from step_timer import parse_report

from mmjax import config as config_lib
from mmjax.flops import two_tower_train_flops, vit_forward_flops

HERE = Path(__file__).resolve().parent
CONFIG = HERE.parent / "configs" / "clip_vit_b32.py"
IMPLS = ("mmjax", "open_clip", "transformers")
DEFAULT_BATCH = {"b32": 16, "small": 64, "tiny": 8}
DEFAULT_PEER_PYTHON = Path("/work/peers-venv/bin/python")
# The same AdamW for every implementation; no gradient clipping, constant learning rate.
ADAMW = {"lr": 1e-4, "b1": 0.9, "b2": 0.98, "eps": 1e-6, "weight_decay": 0.05}
# Single-GPU XLA flags that matter for a transformer train step: overlap independent
# work, and cuBLAS (not Triton) for the dense bf16 GEMMs.
GPU_XLA_FLAGS = (
    "--xla_gpu_enable_latency_hiding_scheduler=true "
    "--xla_gpu_enable_triton_gemm=false "
    "--xla_gpu_enable_highest_priority_async_stream=true"
)


def has_gpu() -> bool:
    """An NVIDIA GPU is visible (checked without starting a JAX or torch runtime here)."""
    smi = shutil.which("nvidia-smi")
    return bool(smi) and subprocess.run([smi, "-L"], capture_output=True).returncode == 0


def model_config(name: str):
    return config_lib.load_config(f"{CONFIG}" + ("" if name == "b32" else f":{name}")).model


def arch_spec(model) -> dict:
    """The architecture as plain data, for the PyTorch worker (which has no mmjax)."""
    img_keys = ("image_size", "patch_size", "width", "depth", "num_heads", "mlp_dim")
    txt_keys = ("context_length", "vocab_size", "width", "depth", "num_heads", "mlp_dim")
    return {
        "embed_dim": model.embed_dim,
        "image": {k: model.image[k] for k in img_keys},
        "text": {**{k: model.text[k] for k in txt_keys}, "eos_id": model.text.eos_id},
    }


def flops_per_sample(model, batch: int, variant: str) -> float:
    """Analytic matmul FLOPs of one step per sample; a locked image tower runs forward only."""
    flops = two_tower_train_flops(model, batch)
    if variant == "locked":  # no backward (2x forward) through the image tower + projection
        flops -= (
            2 * batch * (vit_forward_flops(model.image) + 2 * model.embed_dim * model.image.width)
        )
    return flops / batch


def run_worker(impl: str, spec: dict, peer_python: Path | None, env: dict) -> dict | None:
    """Runs one worker subprocess; returns its result, or ``None`` with a note on failure."""
    if impl == "mmjax":
        cmd = [sys.executable, str(HERE / "vs_peers_mmjax.py")]
    else:
        cmd = [str(peer_python), str(HERE / "vs_peers_torch.py")]
    proc = subprocess.run(
        [*cmd, json.dumps({**spec, "impl": impl})], capture_output=True, text=True, env=env
    )
    result = parse_report(proc.stdout)
    if proc.returncode or result is None:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
        print(f"note: {impl} failed ({spec.get('config')}): {' | '.join(tail)}", file=sys.stderr)
        return None
    return result


def check_param_counts(config: str, impls: list[str], peer_python, env, variants) -> None:
    """Every implementation must build the same number of (trainable) parameters."""
    model = model_config(config)
    for variant in variants:
        spec = {"config": config, "arch": arch_spec(model), "variant": variant, "count_only": True}
        spec.update(precision="fp32", attention="xla", adamw=ADAMW)
        counts = {i: run_worker(i, spec, peer_python, env) for i in impls}
        seen = {i: (c["params"], c["trainable_params"]) for i, c in counts.items() if c}
        print(
            f"params ({config}, {variant}): "
            + ", ".join(f"{i} {p:,} ({t:,} trainable)" for i, (p, t) in seen.items())
        )
        if len(set(seen.values())) > 1:
            raise SystemExit(f"parameter counts differ for {config}/{variant}: {seen}")


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--configs", nargs="+", default=None, choices=sorted(DEFAULT_BATCH))
    parser.add_argument("--batch", type=int, default=None, help="batch for every config")
    parser.add_argument("--precision", nargs="+", default=None, choices=("fp32", "bf16"))
    parser.add_argument("--variant", nargs="+", default=["full"], choices=("full", "locked"))
    parser.add_argument("--attention", nargs="+", default=None, choices=("xla", "cudnn"))
    parser.add_argument("--impls", nargs="+", default=None, choices=IMPLS)
    parser.add_argument("--steps", type=int, default=None, help="timed steps (median)")
    parser.add_argument("--warmup", type=int, default=None, help="untimed steps first")
    parser.add_argument("--repeats", type=int, default=1, help="rounds over all rows")
    parser.add_argument("--peer-python", type=Path, default=None)
    parser.add_argument("--gpu", action="store_true", help="GPU mode (default: if one is seen)")
    parser.add_argument("--smoke", action="store_true", help="tiny config, mmjax, 2 steps")
    parser.add_argument("--json", type=Path, help="also write the rows here as a JSON list")
    parser.add_argument("--profile", type=Path, help="jax.profiler trace of mmjax steps here")
    args = parser.parse_args(argv)
    gpu = args.gpu or has_gpu()
    args.gpu = gpu
    if args.smoke:
        args.configs = args.configs or ["tiny"]
        args.impls = args.impls or ["mmjax"]
        args.steps, args.warmup = args.steps or 2, args.warmup or 1
    if gpu and args.json is None:
        args.json = Path("vs_peers_gpu.json")
    args.configs = args.configs or ["b32", "small"]
    args.precision = args.precision or (["bf16"] if gpu else ["fp32"])
    args.attention = args.attention or (["xla", "cudnn"] if gpu else ["xla"])
    args.impls = args.impls or list(IMPLS)
    args.steps = args.steps or (20 if gpu else 5)
    args.warmup = args.warmup or (5 if gpu else 2)
    if args.peer_python is None and DEFAULT_PEER_PYTHON.exists():
        args.peer_python = DEFAULT_PEER_PYTHON
    if args.peer_python is None and set(args.impls) - {"mmjax"}:
        print("note: no --peer-python (and no /work/peers-venv): peers skipped", file=sys.stderr)
        args.impls = [i for i in args.impls if i == "mmjax"]
    return args


def worker_env(gpu: bool) -> dict:
    env = dict(os.environ)
    if gpu:
        env["XLA_FLAGS"] = f"{GPU_XLA_FLAGS} {env.get('XLA_FLAGS', '')}".strip()
    return env


def measure(args: argparse.Namespace) -> list[dict]:
    env = worker_env(args.gpu)
    for config in args.configs if len(args.impls) > 1 else []:
        check_param_counts(config, args.impls, args.peer_python, env, args.variant)
    rows = []
    for _ in range(args.repeats):
        for config in args.configs:
            model = model_config(config)
            batch = args.batch or DEFAULT_BATCH[config]
            for precision in args.precision:
                for variant in args.variant:
                    runs = [("mmjax", a) for a in args.attention if "mmjax" in args.impls]
                    runs += [(i, "sdpa") for i in args.impls if i != "mmjax"]
                    for impl, attention in runs:
                        spec = dict(config=config, arch=arch_spec(model), batch=batch)
                        spec.update(precision=precision, variant=variant, attention=attention)
                        spec.update(warmup=args.warmup, steps=args.steps, adamw=ADAMW)
                        spec["peak_n"] = 256 if args.smoke else None  # matmul-peak size
                        if args.profile:
                            name = f"{config}-{precision}-{variant}-{attention}"
                            spec["profile_dir"] = str(args.profile / name)
                        load = os.getloadavg()[0]
                        r = run_worker(impl, spec, args.peer_python, env)
                        if r is None:
                            continue
                        print(
                            f"  {impl} {config} b{batch} {precision} {variant} {attention}: "
                            f"{r['step_s'] * 1e3:.0f} ms/step",
                            flush=True,
                        )
                        rows.append(
                            {
                                "impl": impl,
                                **{k: spec[k] for k in ("config", "batch", "precision")},
                                "variant": variant,
                                "attention": attention,
                                "step_s": r["step_s"],
                                "samples_per_s": batch / r["step_s"],
                                "flops_per_sample": flops_per_sample(model, batch, variant),
                                "framework_peak_flops": r["peak_flops"],
                                "params": r["params"],
                                "device": r["device"],
                                "load_avg_1min": load,
                                "version": r["version"],
                            }
                        )
    return finish(rows)


def finish(rows: list[dict]) -> list[dict]:
    """Median over repeats per row (highest load kept); peak (best per precision), MFU, ratio."""
    key = ("impl", "config", "batch", "precision", "variant", "attention")
    groups: dict[tuple, list[dict]] = {}
    for r in rows:
        groups.setdefault(tuple(r[k] for k in key), []).append(r)
    out = []
    for group in groups.values():
        r = dict(group[0])
        r["step_s"] = statistics.median(g["step_s"] for g in group)
        r["samples_per_s"] = r["batch"] / r["step_s"]
        r["load_avg_1min"] = max(g["load_avg_1min"] for g in group)
        r["repeats"] = len(group)
        out.append(r)
    for r in out:
        peak = max(o["framework_peak_flops"] for o in out if o["precision"] == r["precision"])
        r["peak_flops"] = peak
        r["flops_per_s"] = r["flops_per_sample"] * r["samples_per_s"]
        r["mfu"] = r["flops_per_s"] / peak
        r["of_own_peak"] = r["flops_per_s"] / r["framework_peak_flops"]
        same = ("config", "batch", "precision", "variant")
        mine = [o for o in out if o["impl"] == "mmjax" and all(o[k] == r[k] for k in same)]
        best = max((o["samples_per_s"] for o in mine), default=None)
        r["mmjax_over_this"] = best / r["samples_per_s"] if best else None
    return out


def print_table(rows: list[dict]) -> None:
    if not rows:
        print("no results")
        return
    print(f"device: {rows[0]['device']}; " + ", ".join(sorted({r["version"] for r in rows})))
    for precision in sorted({r["precision"] for r in rows}):
        peak = next(r["peak_flops"] for r in rows if r["precision"] == precision)
        own = {}  # framework -> its best matmul peak over this run's rows
        for r in rows:
            if r["precision"] == precision:
                name = "jax" if r["impl"] == "mmjax" else "torch"
                own[name] = max(own.get(name, 0.0), r["framework_peak_flops"])
        each = ", ".join(f"{name} {value / 1e9:.0f}" for name, value in sorted(own.items()))
        print(
            f"matmul peak ({precision}): best framework in this run {peak / 1e9:.0f} GFLOP/s "
            f"({each})"
        )
    header = (
        f"{'impl':<13} {'config':<6} {'batch':>5} {'prec':<5} {'variant':<7} {'attn':<5} "
        f"{'step ms':>8} {'samples/s':>9} {'mmjax/x':>7} {'GFLOP/smp':>9} {'GFLOP/s':>8} "
        f"{'MFU':>6} {'of own':>6} {'load':>5}"
    )
    print(header)
    print("-" * len(header))
    for r in rows:
        ratio = f"{r['mmjax_over_this']:.2f}x" if r["mmjax_over_this"] else "-"
        print(
            f"{r['impl']:<13} {r['config']:<6} {r['batch']:>5} {r['precision']:<5} "
            f"{r['variant']:<7} {r['attention']:<5} {r['step_s'] * 1e3:>8.0f} "
            f"{r['samples_per_s']:>9.2f} {ratio:>7} {r['flops_per_sample'] / 1e9:>9.2f} "
            f"{r['flops_per_s'] / 1e9:>8.1f} {r['mfu']:>6.1%} {r['of_own_peak']:>6.1%} "
            f"{r['load_avg_1min']:>5.1f}"
        )


def main(argv: list[str] | None = None) -> None:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    print(
        f"load average at start: {os.getloadavg()[0]:.2f} (1 min; 'load' column: before each row)"
    )
    rows = measure(args)
    print_table(rows)
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2) + "\n")


if __name__ == "__main__":
    main()
