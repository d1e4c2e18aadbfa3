"""Evaluation metrics computed on the host from gathered embeddings."""

from __future__ import annotations

import numpy as np


def retrieval_ranks(similarity: np.ndarray) -> np.ndarray:
    """Rank of the right answer for each row of ``[queries, candidates]``; pair i <-> i.

    Ties count against the query (rank = number of other candidates scoring
    at least as high), so a model that maps everything to one point scores
    zero, not perfect.
    """
    similarity = np.asarray(similarity, np.float64)
    n = similarity.shape[0]
    if similarity.shape[1] != n:
        raise ValueError(f"expected a square similarity matrix, got {similarity.shape}")
    correct = similarity[np.arange(n), np.arange(n)][:, None]
    return np.sum(similarity >= correct, axis=1) - 1


def retrieval_metrics(
    image_emb: np.ndarray, text_emb: np.ndarray, ks: tuple[int, ...] = (1, 5)
) -> dict[str, float]:
    """Image->text and text->image recall@K for paired ``[n, dim]`` embeddings."""
    sim = np.asarray(image_emb, np.float64) @ np.asarray(text_emb, np.float64).T
    i2t = retrieval_ranks(sim)
    t2i = retrieval_ranks(sim.T)
    metrics = {}
    for k in ks:
        metrics[f"i2t_r{k}"] = float(np.mean(i2t < k))
        metrics[f"t2i_r{k}"] = float(np.mean(t2i < k))
    return metrics
