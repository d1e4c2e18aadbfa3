"""Retrieval recall@K against a brute-force reference."""

from __future__ import annotations

import numpy as np

from mmjax.evaluate import retrieval_metrics, retrieval_ranks


def test_recall_matches_brute_force():
    rng = np.random.default_rng(0)
    img, txt = rng.normal(size=(50, 8)), rng.normal(size=(50, 8))
    txt[:20] = img[:20] + 0.01 * rng.normal(size=(20, 8))  # 20 clearly matched pairs
    img /= np.linalg.norm(img, axis=1, keepdims=True)
    txt /= np.linalg.norm(txt, axis=1, keepdims=True)
    got = retrieval_metrics(img, txt, ks=(1, 5))
    sim = img @ txt.T
    for k in (1, 5):
        i2t = np.mean([i in np.argsort(-sim[i])[:k] for i in range(50)])
        t2i = np.mean([i in np.argsort(-sim[:, i])[:k] for i in range(50)])
        assert got[f"i2t_r{k}"] == i2t and got[f"t2i_r{k}"] == t2i
    assert got["i2t_r1"] >= 0.4


def test_ties_count_against_the_query():
    collapsed = np.ones((10, 4))
    assert retrieval_metrics(collapsed, collapsed)["i2t_r1"] == 0.0
    assert (retrieval_ranks(np.eye(3)) == 0).all()
