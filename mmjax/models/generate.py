"""Autoregressive generation under ``jax.jit``: greedy, beam search and sampling (temperature,
top-k, classifier-free guidance).

Both run one ``jax.lax.while_loop`` over positions with fixed shapes, the model's
key/value cache carried in the loop state, so the step function is traced once
whatever ``max_len`` is and the whole generation is one compiled program.

The model enters as ``step_fn(cache, tokens) -> (logits, cache)``: ``tokens`` int32
``[n]`` are the tokens at the current position, ``logits`` ``[n, vocab]`` score the next
one, and ``cache`` is any pytree (a Flax ``'cache'`` collection). Outputs are
``[batch, max_len]`` int32 ids that start with ``bos_id``; positions after ``eos_id``
hold ``pad_id``. ``pad_id`` is never generated (it would be indistinguishable from
padding) unless it is ``eos_id``. A sequence that emits no EOS stops at ``max_len`` (as
training truncates).
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


def _next_log_probs(logits: jax.Array, pad_id: int, eos_id: int) -> jax.Array:
    """fp32 log-softmax ``[..., vocab]`` over every token but ``pad_id`` (ruled out), unless
    the pad token is EOS (CLIP-style tokenizers pad with EOS): EOS must stay possible."""
    logits = logits.astype(jnp.float32)
    if pad_id != eos_id:
        logits = logits.at[..., pad_id].set(NEG_INF)
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
        logp = _next_log_probs(logits, pad_id, eos_id)  # [batch, vocab]
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
    return ((5.0 + jnp.asarray(lengths, jnp.float32)) / 6.0) ** alpha


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
    """Beam search: ``(ids [batch, max_len], log_prob [batch])`` of the best hypothesis.

    ``cache`` holds ``batch_size * beam_size`` rows (example-major) on ``cache_batch_axis``
    (1 for a scanned layer stack, whose cache leaves are ``[layers, rows, ...]``).

    The standard algorithm (transformers' Flax ``_beam_search``, after Flax's WMT
    example): ``k = beam_size`` running beams and, apart from them, the ``k`` best
    finished hypotheses. Each step takes the top ``2k`` expansions of the running beams by
    cumulative log-prob (so ``k`` survive even if ``k`` of them end here); those ending in
    EOS (or reaching ``max_len``, where every candidate ends, as greedy truncates) enter
    the finished set scored ``log_prob / length_penalty(length, alpha)`` (GNMT; ``length``
    counts generated tokens, EOS included; ``alpha=0``: plain log-prob), the best ``k``
    that did not end become the running beams, and the caches are reordered by them. The
    loop stops early once no running beam can still beat the worst finished hypothesis:
    log-probs only fall, so a beam's best reachable score is its log-prob over the largest
    penalty of the lengths it can still reach (an exact bound, for any ``alpha``). The
    result is the best finished hypothesis and its (unpenalized) log-prob. With
    ``beam_size=1`` the running beam follows greedy's path and the best hypothesis that
    ended on the way is kept too, so the result scores at least greedy's; with
    ``beam_size`` at least the number of distinct prefixes it is exhaustive search. No
    width in between guarantees a score >= greedy's: the greedy prefix can be pruned.
    """
    b, k = batch_size, beam_size
    ids = jnp.full((b, k, max_len), pad_id, jnp.int32).at[:, :, 0].set(bos_id)
    # Only beam 0 is live at the start: the others would duplicate it.
    scores = jnp.tile(jnp.where(jnp.arange(k) == 0, 0.0, NEG_INF)[None], (b, 1))
    state = (
        jnp.zeros((), jnp.int32),
        ids,
        scores.astype(jnp.float32),
        cache,
        ids,  # finished hypotheses
        jnp.full((b, k), NEG_INF, jnp.float32),  # their penalized scores
        jnp.full((b, k), NEG_INF, jnp.float32),  # their log-probs
    )

    def best_reachable(i: jax.Array, scores: jax.Array) -> jax.Array:
        """Upper bound on the penalized score of any hypothesis grown from ``scores``
        (running log-probs <= 0) whose next token lands at position ``i + 1``."""
        most = jnp.maximum(length_penalty(i + 1, alpha), length_penalty(max_len - 1, alpha))
        return scores / most

    def cond(state: tuple) -> jax.Array:
        i, _, scores, _, _, fin_scores, _ = state
        alive = scores[:, 0] > NEG_INF / 2  # top_k keeps the running beams sorted
        # An unfilled finished slot (NEG_INF) can always be improved on.
        improvable = best_reachable(i, scores[:, 0]) > fin_scores[:, -1]
        return (i < max_len - 1) & jnp.any(alive & improvable)

    def body(state: tuple) -> tuple:
        i, ids, scores, cache, fin_ids, fin_scores, fin_logp = state
        current = jax.lax.dynamic_index_in_dim(ids, i, 2, keepdims=False)  # [b, k]
        logits, cache = step_fn(cache, current.reshape(b * k))
        logp = _next_log_probs(logits, pad_id, eos_id).reshape(b, k, -1)  # [b, k, vocab]
        vocab = logp.shape[-1]
        candidates = (scores[..., None] + logp).reshape(b, k * vocab)
        top, flat = jax.lax.top_k(candidates, min(2 * k, k * vocab))  # [b, 2k]
        beams, token = flat // vocab, (flat % vocab).astype(jnp.int32)
        seqs = jnp.take_along_axis(ids, beams[..., None], axis=1)
        seqs = jax.lax.dynamic_update_slice(seqs, token[..., None], (0, 0, i + 1))
        ends = (token == eos_id) | (i + 1 == max_len - 1)
        # Running beams: the best k candidates that did not end.
        scores, pick = jax.lax.top_k(jnp.where(ends, NEG_INF, top), k)
        ids = jnp.take_along_axis(seqs, pick[..., None], axis=1)
        cache = gather_beams(cache, jnp.take_along_axis(beams, pick, axis=1), cache_batch_axis)
        # Finished: the best k of the old ones and the candidates that just ended.
        valid = ends & (top > NEG_INF / 2)
        penalized = jnp.where(valid, top / length_penalty(i + 1, alpha), NEG_INF)
        merged = jnp.concatenate([fin_scores, penalized], axis=1)
        fin_scores, keep = jax.lax.top_k(merged, k)
        fin_logp = jnp.take_along_axis(jnp.concatenate([fin_logp, top], axis=1), keep, axis=1)
        fin_ids = jnp.take_along_axis(
            jnp.concatenate([fin_ids, seqs], axis=1), keep[..., None], axis=1
        )
        return i + 1, ids, scores, cache, fin_ids, fin_scores, fin_logp

    _, _, _, _, fin_ids, _, fin_logp = jax.lax.while_loop(cond, body, state)
    return fin_ids[:, 0], fin_logp[:, 0]  # top_k keeps the finished set sorted


def guided_logits(cond: jax.Array, uncond: jax.Array, scale: float) -> jax.Array:
    """Classifier-free guidance (Ho & Salimans 2022): ``uncond + scale * (cond - uncond)``
    (fp32); ``scale=1`` is the conditional model, ``0`` the unconditional one."""
    cond, uncond = cond.astype(jnp.float32), uncond.astype(jnp.float32)
    return uncond + scale * (cond - uncond)


def top_k_filter(logits: jax.Array, k: int) -> jax.Array:
    """``logits`` ``[..., vocab]`` with every entry below the ``k``-th largest of its row set to
    ``NEG_INF`` (ties with the ``k``-th stay); ``k <= 0`` or ``k >= vocab`` keeps all."""
    if k <= 0 or k >= logits.shape[-1]:
        return logits
    kth = jax.lax.top_k(logits, k)[0][..., -1:]
    return jnp.where(logits >= kth, logits, NEG_INF)


def sample(
    step_fn: StepFn,
    cache: Any,
    rng: jax.Array,
    *,
    batch_size: int,
    max_len: int,
    bos_id: int,
    temperature: float = 1.0,
    top_k: int = 0,
    guidance_scale: float | None = None,
) -> tuple[jax.Array, jax.Array]:
    """Ancestral sampling of a fixed length (no end token: image codes):
    ``(ids [batch, max_len] (BOS first), logp [batch, max_len - 1])``.

    Each position draws from ``softmax(top_k_filter(logits, top_k) / temperature)``;
    ``logp`` is the log-probability of each drawn token under the unfiltered model at
    temperature 1 (the guided logits with guidance). With ``guidance_scale`` the cache holds
    ``2 * batch_size`` rows, the conditional ones first and then the unconditional
    (null-condition) ones; both halves are fed the same tokens and their logits mixed
    by ``guided_logits``. ``rng`` is split once per position."""
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0 (top_k=1 is greedy), got {temperature}")
    b = batch_size
    ids = jnp.full((b, max_len), bos_id, jnp.int32)

    def body(i: jax.Array, state: tuple) -> tuple:
        ids, cache, logp = state
        current = jax.lax.dynamic_index_in_dim(ids, i, 1, keepdims=False)
        if guidance_scale is None:
            logits, cache = step_fn(cache, current)
            logits = logits.astype(jnp.float32)
        else:
            both, cache = step_fn(cache, jnp.concatenate([current, current]))
            logits = guided_logits(both[:b], both[b:], guidance_scale)
        filtered = top_k_filter(logits, top_k) / temperature
        token = jax.random.categorical(jax.random.fold_in(rng, i), filtered).astype(jnp.int32)
        token_logp = jnp.take_along_axis(jax.nn.log_softmax(logits), token[:, None], axis=-1)
        ids = jax.lax.dynamic_update_slice(ids, token[:, None], (0, i + 1))
        logp = jax.lax.dynamic_update_slice(logp, token_logp, (0, i))
        return ids, cache, logp

    logp = jnp.zeros((b, max_len - 1), jnp.float32)
    ids, _, logp = jax.lax.fori_loop(0, max_len - 1, body, (ids, cache, logp))
    return ids, logp
