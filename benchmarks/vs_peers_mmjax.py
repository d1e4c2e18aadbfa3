"""The mmjax worker of ``vs_peers.py``: one train-step timing in a fresh process.

    python benchmarks/vs_peers_mmjax.py '{"config": "small", "batch": 64, ...}'

Builds ``configs/clip_vit_b32.py[:small|:tiny]`` with the requested compute dtype and
attention implementation, AdamW over the trainable params (``config.optim.rules``: the
``locked`` variant freezes the image tower and its projection, so the step differentiates
only the text side), and times the jitted, donated step on one fixed random batch.
Prints one ``RESULT`` line.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
from step_timer import median_step_seconds, report
from train_step import matmul_peak

from mmjax import config as config_lib
from mmjax.optim.optimizer import make_optimizer
from mmjax.optim.param_rules import flat_params, make_param_plan
from mmjax.tasks import build_task
from mmjax.train.accumulate import loss_and_grads

CONFIG = Path(__file__).resolve().parents[1] / "configs" / "clip_vit_b32.py"
DTYPES = {"fp32": "float32", "bf16": "bfloat16"}


def build_config(spec: dict):
    arg = "" if spec["config"] == "b32" else f":{spec['config']}"
    config = config_lib.load_config(f"{CONFIG}{arg}")
    return config_lib.apply_overrides(
        config,
        [
            f"model.dtype={DTYPES[spec['precision']]}",
            f"model.attention_impl={'' if spec['attention'] == 'xla' else spec['attention']}",
        ],
    )


def optim_settings(config, spec: dict) -> None:
    """The shared AdamW settings (``vs_peers.ADAMW``), no clipping, constant lr."""
    adamw = spec["adamw"]
    config.optim.update(
        name="adamw",
        lr=adamw["lr"],
        b1=adamw["b1"],
        b2=adamw["b2"],
        eps=adamw["eps"],
        weight_decay=adamw["weight_decay"],
        grad_clip_norm=0.0,
        schedule="constant",
        warmup_steps=0,
    )
    frozen = [("image/.*|image_proj/.*", None)] if spec["variant"] == "locked" else []
    config.optim.rules = [*frozen, (".*", {})]


def random_batch(config, batch: int, seed: int) -> dict[str, np.ndarray]:
    """uint8 images and full-length token rows that end in the end-of-text id."""
    rng = np.random.default_rng(seed)
    size, text = config.model.image.image_size, config.model.text
    tokens = rng.integers(1, text.vocab_size - 1, (batch, text.context_length), dtype=np.int32)
    tokens[:, -1] = text.eos_id
    return {
        "image": rng.integers(0, 256, (batch, size, size, 3), dtype=np.uint8),
        "tokens": tokens,
        "padding_mask": np.ones((batch, text.context_length), bool),
    }


def make_step(task, tx, frozen):
    def step(trainable, opt_state, batch, rng):
        _, _, grads = loss_and_grads(task, trainable, frozen, batch, rng)
        updates, opt_state = tx.update(grads, opt_state, trainable)
        return optax.apply_updates(trainable, updates), opt_state

    return jax.jit(step, donate_argnums=(0, 1))


def main(spec: dict) -> None:
    config = build_config(spec)
    optim_settings(config, spec)
    task = build_task(config)
    init = jax.jit(lambda r: nn.unbox(task.init(r)["params"]))
    shapes = {
        p: v.shape for p, v in flat_params(jax.eval_shape(init, jax.random.PRNGKey(0))).items()
    }
    plan = make_param_plan(config.optim, shapes)
    counts = {
        "params": plan.num_params(list(shapes)),
        "trainable_params": plan.num_params(plan.trainable),
    }
    if spec.get("count_only"):
        report(counts)
        return
    params = init(jax.random.PRNGKey(0))
    trainable, frozen = plan.split(params)
    tx, _ = make_optimizer(config.optim, 1_000_000, plan)
    opt_state = tx.init(trainable)
    batch = jax.device_put(random_batch(config, spec["batch"], spec.get("seed", 0)))
    rng = jax.random.PRNGKey(1)
    step = make_step(task, tx, frozen)
    t0 = time.perf_counter()
    compiled = step.lower(trainable, opt_state, batch, rng).compile()
    compile_s = time.perf_counter() - t0
    state = [trainable, opt_state]

    def run():
        state[:] = compiled(state[0], state[1], batch, rng)
        return state

    step_s = median_step_seconds(run, jax.block_until_ready, spec["warmup"], spec["steps"])
    if spec.get("profile_dir"):  # a trace of 3 more steps, for TensorBoard / Perfetto
        with jax.profiler.trace(spec["profile_dir"]):
            for _ in range(3):
                jax.block_until_ready(run())
    on_gpu = jax.default_backend() == "gpu"
    dtype = jnp.bfloat16 if spec["precision"] == "bf16" else jnp.float32
    state.clear()  # free device memory before the peak matmul
    report(
        {
            **counts,
            "step_s": step_s,
            "compile_s": compile_s,
            "peak_flops": matmul_peak(dtype, n=spec.get("peak_n") or (8192 if on_gpu else 2048)),
            "device": jax.devices()[0].device_kind,
            "version": f"jax {jax.__version__}",
        }
    )


if __name__ == "__main__":
    main(json.loads(sys.argv[1]))
