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
    image_emb: np.ndarray,
    text_emb: np.ndarray,
    ks: tuple[int, ...] = (1, 5, 10),
    image_ids: np.ndarray | None = None,
) -> dict[str, float]:
    """Image->text and text->image recall@K.

    Without ``image_ids`` row i of ``image_emb`` ``[n, dim]`` and of ``text_emb`` ``[n, dim]``
    form pair i. With ``image_ids`` ``[n]`` (the rows are (image, caption) pairs, and an image
    with several captions appears in several rows), images are deduplicated by id: an
    image query is right at K when any of its captions is in the top K (the COCO
    protocol), and a caption query when its own image is. Ties count against the query.
    """
    image_emb = np.asarray(image_emb, np.float64)
    text_emb = np.asarray(text_emb, np.float64)
    if image_ids is None:
        sim = image_emb @ text_emb.T
        i2t = retrieval_ranks(sim)
        t2i = retrieval_ranks(sim.T)
    else:
        ids, first, owner = np.unique(np.asarray(image_ids), return_index=True, return_inverse=True)
        sim = image_emb[first] @ text_emb.T  # [images, texts]
        correct = owner[None, :] == np.arange(len(ids))[:, None]  # [images, texts]
        # Best-scoring right caption per image; rank = wrong captions scoring at least as high.
        best = np.where(correct, sim, -np.inf).max(axis=1, keepdims=True)
        i2t = np.sum((sim >= best) & ~correct, axis=1)
        right = sim[owner, np.arange(len(owner))][None, :]  # each caption's own image
        t2i = np.sum((sim >= right) & ~correct, axis=0)
    metrics = {}
    for k in ks:
        metrics[f"i2t_r{k}"] = float(np.mean(i2t < k))
        metrics[f"t2i_r{k}"] = float(np.mean(t2i < k))
    return metrics


def zeroshot_accuracy(similarity: np.ndarray, labels: np.ndarray) -> float:
    """Top-1 accuracy of zero-shot classification from image-to-class ``similarity``
    ``[n, classes]`` (e.g. against averaged prompt embeddings); ``labels`` ``[n]`` are class
    indices. Ties count against the image."""
    sim = np.asarray(similarity, np.float64)
    labels = np.asarray(labels)
    right = sim[np.arange(len(labels)), labels][:, None]
    return float(np.mean(np.sum(sim >= right, axis=1) == 1))


def itm_accuracy(positive_logits: np.ndarray, negative_logits: np.ndarray) -> float:
    """Balanced image-text matching accuracy (chance 0.5): ITM logits ``[n, 2]`` (class 1 =
    match) of ``n`` matching pairs and of ``n`` non-matching ones; a pair is called a match
    when its class-1 logit is strictly larger, so a constant head scores 0.5."""
    pos = np.asarray(positive_logits, np.float64)
    neg = np.asarray(negative_logits, np.float64)
    right = np.concatenate([pos[:, 1] > pos[:, 0], neg[:, 1] <= neg[:, 0]])
    return float(np.mean(right))
