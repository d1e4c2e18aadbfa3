"""Autoregressive generation under ``jax.jit``: greedy and beam search.

Both run one ``jax.lax.while_loop`` over positions with fixed shapes, the model's
key/value cache carried in the loop state, so the step function is traced once
whatever ``max_len`` is and the whole generation is one compiled program.

The model enters as ``step_fn(cache, tokens) -> (logits, cache)``: ``tokens`` int32
``[n]`` are the tokens at the current position, ``logits`` ``[n, vocab]`` score the next
one, and ``cache`` is any pytree (a Flax ``'cache'`` collection). Outputs are
``[batch, max_len]`` int32 ids that start with ``bos_id``; positions after ``eos_id``
hold ``pad_id``. ``pad_id`` is never generated (it would be indistinguishable from
padding). A sequence that emits no EOS stops at ``max_len`` (as training truncates).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp

StepFn = Callable[[Any, jax.Array], tuple[jax.Array, Any]]
NEG_INF = -1.0e9  # finite "impossible" score: no inf - inf NaNs in the beam arithmetic


def cached_step(
    apply: Callable[[Any, jax.Array], tuple[jax.Array, Any]], rows: int, max_len: int
) -> tuple[StepFn, Any]:
    """``(step_fn, zero cache)`` from a cached model call
    ``apply(cache, tokens [rows, s]) -> (logits [rows, s, vocab], cache)`` (a Flax
    ``mutable=['cache']`` apply; ``cache=None`` is the call that creates the cache).
    The cache is built from the shapes of the creating call on ``[rows, max_len]`` tokens
    (``jax.eval_shape``: no forward pass); ``step_fn`` takes tokens ``[rows]``."""

    def step(cache: Any, tokens: jax.Array) -> tuple[jax.Array, Any]:
        logits, cache = apply(cache, tokens[:, None])
        return logits[:, 0], cache

    full = jnp.zeros((rows, max_len), jnp.int32)
    shapes = jax.eval_shape(lambda t: apply(None, t)[1], full)
    return step, jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), shapes)


def _next_log_probs(logits: jax.Array, pad_id: int) -> jax.Array:
    """fp32 log-softmax ``[..., vocab]`` over every token but ``pad_id`` (ruled out)."""
    logits = logits.astype(jnp.float32).at[..., pad_id].set(NEG_INF)
    return jax.nn.log_softmax(logits, axis=-1)


def greedy(
    step_fn: StepFn,
    cache: Any,
    *,
    batch_size: int,
    max_len: int,
    bos_id: int,
    eos_id: int,
    pad_id: int = 0,
) -> tuple[jax.Array, jax.Array]:
    """Greedy decoding: ``(ids [batch, max_len], log_prob [batch])``; ``log_prob`` sums the
    log-probabilities of the generated tokens (EOS included). ``cache`` holds ``batch_size``
    rows. The loop ends at ``max_len`` or when every row has emitted EOS."""
    ids = jnp.full((batch_size, max_len), pad_id, jnp.int32).at[:, 0].set(bos_id)
    state = (
        jnp.zeros((), jnp.int32),
        ids,
        cache,
        jnp.zeros((batch_size,), bool),
        jnp.zeros((batch_size,), jnp.float32),
    )

    def cond(state: tuple) -> jax.Array:
        i, _, _, done, _ = state
        return (i < max_len - 1) & ~jnp.all(done)

    def body(state: tuple) -> tuple:
        i, ids, cache, done, score = state
        logits, cache = step_fn(cache, jax.lax.dynamic_index_in_dim(ids, i, 1, keepdims=False))
        logp = _next_log_probs(logits, pad_id)  # [batch, vocab]
        token = jnp.argmax(logp, axis=-1).astype(jnp.int32)
        token_logp = jnp.take_along_axis(logp, token[:, None], axis=-1)[:, 0]
        token = jnp.where(done, pad_id, token)
        score = score + jnp.where(done, 0.0, token_logp)
        ids = jax.lax.dynamic_update_slice(ids, token[:, None], (0, i + 1))
        return i + 1, ids, cache, done | (token == eos_id), score

    _, ids, _, _, score = jax.lax.while_loop(cond, body, state)
    return ids, score


def length_penalty(lengths: jax.Array, alpha: float) -> jax.Array:
    """GNMT's ``((5 + length) / 6) ** alpha`` (Wu et al. 2016); 1 when ``alpha == 0``."""
    return ((5.0 + lengths.astype(jnp.float32)) / 6.0) ** alpha


def gather_beams(tree: Any, beams: jax.Array, batch_axis: int = 0) -> Any:
    """Reorders the beams of every array in ``tree`` whose ``batch_axis`` holds
    ``batch * beam`` rows (beam-major within each example: row ``b * beam + k``) by
    ``beams`` int ``[batch, beam]``; arrays with no such axis (cache indices) pass through."""
    batch, beam = beams.shape

    def gather(x: jax.Array) -> jax.Array:
        if x.ndim <= batch_axis:
            return x
        shape = x.shape
        split = x.reshape(*shape[:batch_axis], batch, beam, *shape[batch_axis + 1 :])
        index = beams.reshape((1,) * batch_axis + (batch, beam) + (1,) * (x.ndim - batch_axis - 1))
        return jnp.take_along_axis(split, index, axis=batch_axis + 1).reshape(shape)

    return jax.tree.map(gather, tree)


def beam_search(
    step_fn: StepFn,
    cache: Any,
    *,
    batch_size: int,
    beam_size: int,
    max_len: int,
    bos_id: int,
    eos_id: int,
    pad_id: int = 0,
    alpha: float = 0.0,
    cache_batch_axis: int = 0,
) -> tuple[jax.Array, jax.Array]:
    """Beam search: ``(ids [batch, max_len], log_prob [batch])`` of the best beam.

    ``cache`` holds ``batch_size * beam_size`` rows (example-major) on ``cache_batch_axis``
    (1 for a scanned layer stack, whose cache leaves are ``[layers, rows, ...]``).

    Each step expands every live beam by every token and keeps the ``beam_size`` best
    candidates by cumulative log-prob; a finished beam stays in the running with its
    score (its only continuation is ``pad_id`` at no cost), so the search keeps the
    top-k sequences by log-prob, finished or not. Caches are reordered by the chosen
    beams. At the end the best of the final beams is the one with the highest
    ``log_prob / length_penalty(length, alpha)`` (GNMT; ``alpha=0``: plain log-prob;
    ``length`` counts generated tokens, EOS included). With ``beam_size=1`` this is
    exactly ``greedy``.
    """
    b, k = batch_size, beam_size
    ids = jnp.full((b, k, max_len), pad_id, jnp.int32).at[:, :, 0].set(bos_id)
    # Only beam 0 is live at the start: the others would duplicate it.
    scores = jnp.tile(jnp.where(jnp.arange(k) == 0, 0.0, NEG_INF)[None], (b, 1))
    state = (
        jnp.zeros((), jnp.int32),
        ids,
        cache,
        jnp.zeros((b, k), bool),
        scores.astype(jnp.float32),
        jnp.zeros((b, k), jnp.int32),
    )

    def cond(state: tuple) -> jax.Array:
        i, _, _, done, _, _ = state
        return (i < max_len - 1) & ~jnp.all(done)

    def body(state: tuple) -> tuple:
        i, ids, cache, done, scores, lengths = state
        current = jax.lax.dynamic_index_in_dim(ids, i, 2, keepdims=False)  # [b, k]
        logits, cache = step_fn(cache, current.reshape(b * k))
        logp = _next_log_probs(logits, pad_id).reshape(b, k, -1)  # [b, k, vocab]
        vocab = logp.shape[-1]
        only_pad = jnp.where(jnp.arange(vocab) == pad_id, 0.0, NEG_INF)
        logp = jnp.where(done[..., None], only_pad, logp)
        candidates = (scores[..., None] + logp).reshape(b, k * vocab)
        scores, flat = jax.lax.top_k(candidates, k)  # [b, k]
        beams, token = flat // vocab, (flat % vocab).astype(jnp.int32)
        ids = jnp.take_along_axis(ids, beams[..., None], axis=1)
        ids = jax.lax.dynamic_update_slice(ids, token[..., None], (0, 0, i + 1))
        was_done = jnp.take_along_axis(done, beams, axis=1)
        lengths = jnp.take_along_axis(lengths, beams, axis=1) + (~was_done).astype(jnp.int32)
        cache = gather_beams(cache, beams, cache_batch_axis)
        return i + 1, ids, cache, was_done | (token == eos_id), scores, lengths

    _, ids, _, _, scores, lengths = jax.lax.while_loop(cond, body, state)
    best = jnp.argmax(scores / length_penalty(lengths, alpha), axis=1)  # [b]
    best_ids = jnp.take_along_axis(ids, best[:, None, None], axis=1)[:, 0]
    return best_ids, jnp.take_along_axis(scores, best[:, None], axis=1)[:, 0]
