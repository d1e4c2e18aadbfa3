"""Loss and gradients w.r.t. the trainable params, optionally over k micro-batches.

Only the trainable subtree is differentiated; frozen params enter as constants,
so XLA computes no backward pass for them. With ``accum_steps = k > 1`` the batch
``[batch, ...]`` is split into k micro-batches of ``batch / k`` (interleaved rows,
so a data-parallel shard stays on its device) and a ``jax.lax.scan`` walks them,
so activations are held for one micro-batch at a time:

- ``BatchLossTask``s (``mmjax.tasks.base``: ``forward(params, batch, rng, train) ->
  outputs`` and ``loss_from_outputs(outputs) -> (loss, metrics)``, losses over the whole
  batch such as contrastive ones) get the exact big-batch gradient (the GradCache
  recipe): pass 1 computes every micro-batch's outputs without gradients, the
  loss and its gradient w.r.t. the outputs are taken on the full batch, and
  pass 2 re-runs each micro-batch forward and pulls that output gradient back
  through it (``jax.vjp``). Outputs with a leading batch axis are put back in the
  batch's row order; scalar outputs (a temperature) come from the first micro-batch.
- Other tasks average the micro-batch losses and gradients, which equals the
  big batch for losses that are means over examples.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp

from mmjax.optim.param_rules import merge_params
from mmjax.tasks.base import BatchLossTask, Task

Batch = dict[str, jax.Array]


def split_micro_batches(batch: Any, k: int) -> Any:
    """``[batch, ...]`` -> ``[k, batch / k, ...]``; micro-batch ``i`` holds rows ``i, i+k, ...``."""

    def split(x: jax.Array) -> jax.Array:
        if x.shape[0] % k:
            raise ValueError(
                f"batch size {x.shape[0]} is not divisible by config.optim.accum_steps ({k})"
            )
        return jnp.swapaxes(x.reshape(x.shape[0] // k, k, *x.shape[1:]), 0, 1)

    return jax.tree.map(split, batch)


def merge_micro_batches(x: jax.Array) -> jax.Array:
    """Inverse of ``split_micro_batches`` for one array: ``[k, b, ...]`` -> ``[k * b, ...]``."""
    return jnp.swapaxes(x, 0, 1).reshape(-1, *x.shape[2:])


def loss_and_grads(
    task: Task,
    trainable: Any,
    frozen: Any,
    batch: Batch,
    rng: jax.Array,
    accum_steps: int = 1,
) -> tuple[jax.Array, dict[str, jax.Array], Any]:
    """``(loss, metrics, grads)`` with ``grads`` shaped like ``trainable``."""

    def loss_fn(params: Any, b: Batch, r: jax.Array) -> tuple[jax.Array, dict]:
        return task.loss(merge_params(params, frozen), b, r, True)

    if accum_steps == 1:
        (loss, metrics), grads = jax.value_and_grad(loss_fn, has_aux=True)(trainable, batch, rng)
        return loss, metrics, grads
    micro = split_micro_batches(batch, accum_steps)
    rngs = jax.random.split(rng, accum_steps)
    if isinstance(task, BatchLossTask):

        def forward(params: Any, b: Batch, r: jax.Array) -> dict[str, jax.Array]:
            return task.forward(merge_params(params, frozen), b, r, True)

        return _exact(forward, task.loss_from_outputs, trainable, micro, rngs)
    return _averaged(loss_fn, trainable, micro, rngs)


def _averaged(
    loss_fn: Callable, trainable: Any, micro: Batch, rngs: jax.Array
) -> tuple[jax.Array, dict, Any]:
    grad_fn = jax.value_and_grad(loss_fn, has_aux=True)

    def body(carry: Any, xs: tuple[Batch, jax.Array]) -> tuple[Any, None]:
        (loss, metrics), grads = grad_fn(trainable, *xs)
        return jax.tree.map(jnp.add, carry, (loss, metrics, grads)), None

    k = rngs.shape[0]
    shapes = jax.eval_shape(grad_fn, trainable, *jax.tree.map(lambda x: x[0], (micro, rngs)))
    (loss_s, metrics_s), grads_s = shapes
    zeros = jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), (loss_s, metrics_s, grads_s))
    total, _ = jax.lax.scan(body, zeros, (micro, rngs))
    return jax.tree.map(lambda x: x / k, total)


def _exact(
    forward: Callable,
    loss_from_outputs: Callable,
    trainable: Any,
    micro: Batch,
    rngs: jax.Array,
) -> tuple[jax.Array, dict, Any]:
    k = rngs.shape[0]

    def embed(_: None, xs: tuple[Batch, jax.Array]) -> tuple[None, dict]:
        return None, forward(jax.lax.stop_gradient(trainable), *xs)

    _, stacked = jax.lax.scan(embed, None, (micro, rngs))  # leaves [k, ...]
    per_example = {n for n, v in stacked.items() if v.ndim >= 2}
    outputs = {  # back in the batch's own row order
        n: merge_micro_batches(v) if n in per_example else v[0] for n, v in stacked.items()
    }
    (loss, metrics), d_outputs = jax.value_and_grad(loss_from_outputs, has_aux=True)(outputs)
    first = jnp.arange(k) == 0
    cotangents = {
        n: split_micro_batches(g, k)
        if n in per_example
        else jnp.where(first.reshape(-1, *([1] * g.ndim)), g[None], jnp.zeros_like(g)[None])
        for n, g in d_outputs.items()
    }

    def backward(grads: Any, xs: tuple[Batch, jax.Array, dict]) -> tuple[Any, None]:
        b, r, ct = xs
        _, vjp = jax.vjp(lambda p: forward(p, b, r), trainable)
        (g,) = vjp(ct)
        return jax.tree.map(jnp.add, grads, g), None

    zeros = jax.tree.map(jnp.zeros_like, trainable)
    grads, _ = jax.lax.scan(backward, zeros, (micro, rngs, cotangents))
    return loss, metrics, grads
