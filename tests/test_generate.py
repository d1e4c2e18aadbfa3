"""Greedy and beam search against exhaustive search on small Markov models.

A model is a table ``[batch, vocab (previous token), vocab (current token), vocab (next)]``
of log-probs: the previous token is carried in the cache, so a search that reorders its
cache wrongly scores the wrong sequences. The reference is plain Python enumeration."""

from __future__ import annotations

import functools
import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mmjax.models.generate import beam_search, greedy

PAD, BOS, EOS = 0, 1, 2


@functools.partial(jax.jit, static_argnames=("kind", "beam", "max_len", "pad_id"))
def _search(log_table, kind, beam=1, max_len=5, alpha=0.0, pad_id=PAD):
    """``greedy`` / ``beam_search`` of one table per example, under jit."""
    batch = log_table.shape[0]
    rows = batch * (1 if kind == "greedy" else beam)
    example = jnp.repeat(jnp.arange(batch), rows // batch)  # example-major rows

    def step_fn(cache, tokens):
        return log_table[example, cache["prev"], tokens], {"prev": tokens}

    cache = {"prev": jnp.zeros((rows,), jnp.int32)}
    special = dict(bos_id=BOS, eos_id=EOS, pad_id=pad_id, batch_size=batch, max_len=max_len)
    if kind == "greedy":
        return greedy(step_fn, cache, **special)
    return beam_search(step_fn, cache, beam_size=beam, alpha=alpha, **special)


def _exhaustive(log_table: np.ndarray, max_len: int, alpha: float = 0.0, pad_id: int = PAD):
    """Every sequence a search can return for one table ``[vocab, vocab, vocab]`` (BOS, then
    tokens up to EOS or ``max_len``): ``(rows [n, max_len], log_prob [n], score [n])``, the
    pad token ruled out and renormalized unless it is EOS, the score GNMT-penalized."""
    lp = np.asarray(log_table, np.float64)
    if pad_id != EOS:
        lp = lp.copy()
        lp[..., pad_id] = -np.inf
        lp -= np.log(np.exp(lp).sum(-1, keepdims=True))
    choices = [t for t in range(lp.shape[-1]) if t != pad_id or pad_id == EOS]
    found: dict[tuple, tuple[float, float]] = {}
    for tail in itertools.product(choices, repeat=max_len - 1):
        row, logp, prev = [BOS], 0.0, 0  # the cache starts at zeros
        for t in tail:
            logp += lp[prev, row[-1], t]
            prev = row[-1]
            row.append(t)
            if t == EOS:
                break
        n = len(row) - 1  # generated tokens, EOS included
        found[tuple(row + [pad_id] * (max_len - len(row)))] = (logp, logp / ((5 + n) / 6) ** alpha)
    logp, score = (np.asarray(v) for v in zip(*found.values(), strict=True))
    return np.asarray(list(found), np.int32), logp, score


def _random_tables(seed: int, batch: int, vocab: int) -> np.ndarray:
    logits = 2.0 * np.random.default_rng(seed).standard_normal((batch, vocab, vocab, vocab))
    return logits - np.log(np.exp(logits).sum(-1, keepdims=True))


def _first_order(rows: dict[int, dict[int, float]], vocab: int) -> np.ndarray:
    """A table ``[1, vocab, vocab, vocab]`` from ``{current: {next: prob}}`` (ignoring the
    previous token); a current token not listed is followed by EOS."""
    table = np.full((vocab, vocab), -1e4)
    table[:, EOS] = 0.0
    for current, nxt in rows.items():
        table[current] = -1e4
        for t, p in nxt.items():
            table[current, t] = np.log(p)
    return np.broadcast_to(table, (1, vocab, vocab, vocab)).astype(np.float32)


@pytest.mark.parametrize("alpha", [0.0, 1.5])
def test_a_beam_as_wide_as_the_search_space_is_exhaustive(alpha):
    # vocab 5 (pad, BOS, EOS, 2 words), 4 generated tokens: 1 + 3 + 9 + 27 + 81 sequences.
    vocab, max_len = 5, 5
    tables = _random_tables(0, 6, vocab)
    k = 121
    ids, logp = _search(jnp.asarray(tables), "beam", k, max_len, jnp.float32(alpha))
    g_ids, g_logp = _search(jnp.asarray(tables), "greedy", max_len=max_len)
    for r, table in enumerate(tables):
        rows, want_logp, score = _exhaustive(table, max_len, alpha)
        assert len(rows) == k
        best = int(np.argmax(score))
        np.testing.assert_array_equal(np.asarray(ids[r]), rows[best], err_msg=f"example {r}")
        np.testing.assert_allclose(float(logp[r]), want_logp[best], atol=1e-4)
        # greedy's own row and log-prob are one of the enumerated sequences
        g = [i for i, row in enumerate(rows) if (row == np.asarray(g_ids[r])).all()]
        assert len(g) == 1
        np.testing.assert_allclose(float(g_logp[r]), want_logp[g[0]], atol=1e-4)
        assert score[best] >= score[g[0]] - 1e-6
        if alpha == 0.0:
            assert float(logp[r]) >= float(g_logp[r]) - 1e-5


def test_beam_one_follows_greedy_and_keeps_what_ended_on_the_way():
    vocab, max_len = 6, 6
    tables = jnp.asarray(_random_tables(1, 8, vocab))
    g_ids, g_logp = _search(tables, "greedy", max_len=max_len)
    b_ids, b_logp = _search(tables, "beam", 1, max_len)
    assert (np.asarray(b_logp) >= np.asarray(g_logp) - 1e-5).all()
    same = (np.asarray(b_ids) == np.asarray(g_ids)).all(1)
    assert same.any() and not same.all(), "no example where an early EOS beat greedy"
    ids, logp = _search(tables, "beam", 3, max_len)
    for r in range(8):  # the returned log-prob is the returned row's
        rows, want, _ = _exhaustive(np.asarray(tables[r]), max_len)
        i = [j for j, row in enumerate(rows) if (row == np.asarray(ids[r])).all()]
        assert len(i) == 1
        np.testing.assert_allclose(float(logp[r]), want[i[0]], atol=1e-4)


def test_finished_hypotheses_are_kept_apart_from_the_running_beams():
    # The example: after BOS P(A)=.36, P(B)=.34, P(EOS)=.30, then EOS or C at .5.
    a, b, c = 3, 4, 5
    table = _first_order(
        {BOS: {a: 0.36, b: 0.34, EOS: 0.30}, a: {EOS: 0.5, c: 0.5}, b: {EOS: 0.5, c: 0.5}}, 6
    )
    ids, logp = _search(jnp.asarray(table), "beam", 2, 5)
    np.testing.assert_array_equal(ids[0], [BOS, EOS, PAD, PAD, PAD])
    np.testing.assert_allclose(float(logp[0]), np.log(0.30), rtol=1e-5)
    rows, want, _ = _exhaustive(table[0], 5)
    np.testing.assert_allclose(float(logp[0]), want.max(), rtol=1e-5)


def test_no_beam_width_guarantees_greedy_log_prob():
    # Greedy: BOS A C EOS (.4 * .34); beam 2 keeps A and B, then B's children G and H
    # (.175 each) push the greedy prefix A C (.136) out, and G/H lead nowhere better.
    a, b, c, d, e, f, g, h = range(3, 11)
    spread = {EOS: 0.1, a: 0.3, b: 0.3, d: 0.3}
    table = _first_order(
        {
            BOS: {a: 0.4, b: 0.35, d: 0.25},
            a: {c: 0.34, e: 0.33, f: 0.33},
            b: {g: 0.5, h: 0.5},
            g: spread,
            h: spread,
        },
        11,
    )
    _, g_logp = _search(jnp.asarray(table), "greedy", max_len=4)
    _, b_logp = _search(jnp.asarray(table), "beam", 2, 4)
    np.testing.assert_allclose(float(g_logp[0]), np.log(0.4 * 0.34), rtol=1e-5)
    np.testing.assert_allclose(float(b_logp[0]), np.log(0.35 * 0.5 * 0.3), rtol=1e-5)


def test_eos_can_be_generated_when_it_is_also_the_pad_token():
    # CLIP-style tokenizers pad with EOS: only a pad that is not EOS may be ruled out.
    table = _first_order({BOS: {EOS: 0.6, 3: 0.4}, 3: {EOS: 1.0}}, 4)
    for kind, beam in (("greedy", 1), ("beam", 2)):
        ids, logp = _search(jnp.asarray(table), kind, beam, 4, pad_id=EOS)
        np.testing.assert_array_equal(ids[0], [BOS, EOS, EOS, EOS], err_msg=kind)
        np.testing.assert_allclose(float(logp[0]), np.log(0.6), rtol=1e-5, err_msg=kind)
