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


def normalize_answer(answer: str) -> str:
    """A VQA answer as compared: lowercased, stripped, inner whitespace collapsed."""
    return " ".join(str(answer).lower().split())


def vqa_answer_scores(answers: list[str], vocab: dict[str, int]) -> np.ndarray:
    """VQA v2 soft scores float32 ``[len(vocab)]`` from the annotators' ``answers``: an answer
    given by ``c`` annotators scores ``min(c / 3, 1)``; answers outside ``vocab`` (normalized
    answer -> index) cannot be predicted and are dropped."""
    scores = np.zeros(len(vocab), np.float32)
    for answer in answers:
        index = vocab.get(normalize_answer(answer))
        if index is not None:
            scores[index] += 1.0
    return np.minimum(scores / 3.0, 1.0)


def vqa_accuracy(predicted: np.ndarray, answer_scores: np.ndarray) -> float:
    """VQA accuracy: mean over questions of ``min(#annotators who gave the predicted answer
    / 3, 1)``, i.e. of ``answer_scores[i, predicted[i]]`` (``predicted`` ``[n]`` answer
    indices, ``answer_scores`` ``[n, answers]`` from ``vqa_answer_scores``). Questions with
    one certain answer (one-hot scores, as for the synthetic set) make it exact-match
    accuracy. This is the min(c/3, 1) form, not the official average over the 10
    leave-one-annotator-out subsets (which differs slightly for 10-annotator data).
    """
    scores = np.asarray(answer_scores, np.float64)
    predicted = np.asarray(predicted)
    return float(np.mean(scores[np.arange(len(predicted)), predicted]))


def _check_captions(hypotheses: list[str], references: list[list[str]]) -> list[list[str]]:
    """Non-empty reference lists, one per hypothesis (else a ``ValueError`` naming the row)."""
    if len(hypotheses) != len(references):
        raise ValueError(f"{len(hypotheses)} hypotheses but {len(references)} reference lists")
    refs = [[r for r in rs if r] for rs in references]
    for i, rs in enumerate(refs):
        if not rs:
            raise ValueError(f"caption {i} has no (non-empty) reference")
    return refs


def bleu4(hypotheses: list[str], references: list[list[str]]) -> float:
    """Corpus BLEU-4 as a fraction in [0, 1] (sacrebleu's score / 100: 13a tokenization,
    exponential smoothing). ``references[i]`` holds any number (>= 1) of references for
    ``hypotheses[i]``; n-gram matches are clipped by the most frequent occurrence in any one
    reference and the brevity penalty uses the closest reference length, as in BLEU."""
    import sacrebleu

    refs = _check_captions(hypotheses, references)
    width = max(len(rs) for rs in refs)
    # sacrebleu wants reference streams; None marks a missing reference of a segment.
    streams = [[rs[j] if j < len(rs) else None for rs in refs] for j in range(width)]
    return float(sacrebleu.corpus_bleu(list(hypotheses), streams).score) / 100.0


def cider_available() -> bool:
    """Whether ``pycocoevalcap`` (CIDEr) is installed: the ``[eval]`` extra, a 100 MB wheel
    that also ships COCO's Java tools, so the core install leaves it out."""
    import importlib.util

    return importlib.util.find_spec("pycocoevalcap") is not None


def cider(hypotheses: list[str], references: list[list[str]]) -> float:
    """Corpus CIDEr-D (``pycocoevalcap``'s ``Cider``: tf-idf n-gram cosine with clipping and
    a length penalty, x10; COCO results are usually quoted x100) of whitespace-tokenized,
    lowercased captions. The document frequencies come from these references, so it needs
    more than one image to be meaningful (with one every idf is 0)."""
    from pycocoevalcap.cider.cider import Cider  # optional: pip install 'mmjax[eval]'

    refs = _check_captions(hypotheses, references)
    gts = {i: [r.lower() for r in rs] for i, rs in enumerate(refs)}
    res = {i: [h.lower()] for i, h in enumerate(hypotheses)}
    score, _ = Cider().compute_score(gts, res)
    return float(score)
