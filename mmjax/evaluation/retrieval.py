"""Retrieval over large sets in chunks on the device: recall@K and top-k, without the full
similarity matrix.

``evaluate.retrieval_metrics`` builds the whole ``[images, texts]`` float64 matrix on the
host (50k x 50k = 20 GB). Here a jitted function takes ``chunk`` queries at a time against
every candidate (``[chunk, candidates]`` float32 on the device, 200 MB for 1024 x 50k) and
returns only what the metric needs: per query, the number of wrong candidates scoring at
least as high as its best right one (its rank; ties count against the query, as in
``evaluate.retrieval_ranks``), or its top-k. Same protocol as ``retrieval_metrics``: with
``image_ids`` images are deduplicated and an image is right at K when any of its captions
is in the top K.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

DEFAULT_CHUNK = 1024


@functools.partial(jax.jit, static_argnames=())
def _ranks_chunk(
    queries: jax.Array, candidates: jax.Array, query_owner: jax.Array, cand_owner: jax.Array
) -> jax.Array:
    """``queries`` ``[c, d]`` vs ``candidates`` ``[m, d]``; query i is right for candidate j
    when ``query_owner[i] == cand_owner[j]``. Returns int32 ``[c]``: wrong candidates scoring
    >= the query's best right one."""
    sim = queries @ candidates.T  # [c, m] float32, on the device
    right = query_owner[:, None] == cand_owner[None, :]
    best = jnp.max(jnp.where(right, sim, -jnp.inf), axis=1, keepdims=True)
    return jnp.sum((sim >= best) & ~right, axis=1).astype(jnp.int32)


def _ranks(
    queries: np.ndarray,
    candidates: np.ndarray,
    query_owner: np.ndarray,
    cand_owner: np.ndarray,
    chunk: int,
) -> np.ndarray:
    cands = jnp.asarray(candidates, jnp.float32)
    cand_owner = jnp.asarray(cand_owner, jnp.int32)
    out = []
    for start in range(0, len(queries), chunk):
        q = np.asarray(queries[start : start + chunk], np.float32)
        owner = np.asarray(query_owner[start : start + chunk], np.int32)
        pad = chunk - len(q)  # one compiled shape for every chunk
        if pad:
            q = np.concatenate([q, np.zeros((pad, q.shape[1]), np.float32)])
            owner = np.concatenate([owner, np.full(pad, -1, np.int32)])
        out.append(np.asarray(_ranks_chunk(jnp.asarray(q), cands, jnp.asarray(owner), cand_owner)))
    return np.concatenate(out)[: len(queries)]


def retrieval_metrics_chunked(
    image_emb: np.ndarray,
    text_emb: np.ndarray,
    ks: tuple[int, ...] = (1, 5, 10),
    image_ids: np.ndarray | None = None,
    chunk: int = DEFAULT_CHUNK,
) -> dict[str, float]:
    """``evaluate.retrieval_metrics`` (same keys, protocol and tie rule) computed on the
    device ``chunk`` queries at a time, in float32. ``image_emb`` / ``text_emb`` ``[n, dim]``
    (row i of each form pair i), ``image_ids`` ``[n]`` optional."""
    n = len(image_emb)
    if len(text_emb) != n:
        raise ValueError(f"{n} image rows but {len(text_emb)} text rows")
    if image_ids is None:
        owner = np.arange(n)
        first = owner
    else:
        _, first, owner = np.unique(np.asarray(image_ids), return_index=True, return_inverse=True)
        owner = owner.reshape(-1)
    images = np.asarray(image_emb)[first]  # [images, dim]
    image_owner = np.arange(len(first))
    i2t = _ranks(images, text_emb, image_owner, owner, chunk)
    t2i = _ranks(text_emb, images, owner, image_owner, chunk)
    metrics = {}
    for k in ks:
        metrics[f"i2t_r{k}"] = float(np.mean(i2t < k))
        metrics[f"t2i_r{k}"] = float(np.mean(t2i < k))
    return metrics


@functools.partial(jax.jit, static_argnames=("k",))
def _topk_chunk(queries: jax.Array, candidates: jax.Array, k: int) -> tuple[jax.Array, jax.Array]:
    return jax.lax.top_k(queries @ candidates.T, k)


def topk_chunked(
    queries: np.ndarray, candidates: np.ndarray, k: int, chunk: int = DEFAULT_CHUNK
) -> tuple[np.ndarray, np.ndarray]:
    """Top-``k`` candidates per query by dot product: ``(indices int [q, k], scores float32
    [q, k])``, best first; ``k`` is capped at the number of candidates."""
    k = min(int(k), len(candidates))
    if k < 1:
        raise ValueError(f"k must be >= 1 and there must be candidates (k={k})")
    cands = jnp.asarray(candidates, jnp.float32)
    idx, scores = [], []
    for start in range(0, len(queries), chunk):
        q = np.asarray(queries[start : start + chunk], np.float32)
        pad = min(chunk, len(queries)) - len(q)
        if pad:
            q = np.concatenate([q, np.zeros((pad, q.shape[1]), np.float32)])
        s, i = _topk_chunk(jnp.asarray(q), cands, k)
        scores.append(np.asarray(s))
        idx.append(np.asarray(i))
    n = len(queries)
    return np.concatenate(idx)[:n], np.concatenate(scores)[:n]
