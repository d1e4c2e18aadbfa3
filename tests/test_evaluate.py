"""Retrieval recall@K against a brute-force reference."""

from __future__ import annotations

import numpy as np

from mmjax.evaluation.evaluate import retrieval_metrics, retrieval_ranks, zeroshot_accuracy


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


def test_multi_caption_retrieval_by_image_id():
    # Two images, image 0 with three captions (rows 0-2), image 1 with one (row 3).
    img = np.array([[1.0, 0.0], [1.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
    txt = np.array([[0.2, 0.8], [0.9, 0.1], [0.0, 1.0], [0.1, 0.9]])
    got = retrieval_metrics(img, txt, ks=(1, 2), image_ids=np.array([7, 7, 7, 3]))
    # Image 0: scores to texts (0.2, 0.9, 0.0, 0.1): its caption 1 is first -> hit at 1.
    # Image 1: scores (0.8, 0.1, 1.0, 0.9): captions 2 (1.0, image 0's) beats its only
    # caption 3 (0.9) -> rank 1, a hit only at 2.
    assert got["i2t_r1"] == 0.5 and got["i2t_r2"] == 1.0
    # Texts: 0 -> (0.2 vs 0.8) image 1 wins, wrong; 1 right; 2 (0.0 vs 1.0) wrong; 3 right.
    assert got["t2i_r1"] == 0.5 and got["t2i_r2"] == 1.0
    # One caption per image and ids in row order reduces to the paired protocol.
    rng = np.random.default_rng(1)
    a, b = rng.normal(size=(20, 4)), rng.normal(size=(20, 4))
    assert retrieval_metrics(a, b, image_ids=np.arange(20)[::-1]) == retrieval_metrics(a, b)


def test_zeroshot_accuracy_hand_computed():
    classes = np.array([[1.0, 0.0], [0.0, 1.0]])
    images = np.array([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4], [0.5, 0.5]])
    # predictions: 0, 1, 0, tie (counts against)
    assert zeroshot_accuracy(images @ classes.T, np.array([0, 1, 1, 0])) == 0.5


def test_synthetic_zeroshot_prompts_and_labels():
    from mmjax.data.synthetic import COMBINATIONS
    from mmjax.tasks.zeroshot import ZeroShotPrompts, synthetic_prompts

    names, templates = synthetic_prompts("shape")
    assert names == ["circle", "square", "triangle", "cross"] and len(templates) == 8 * 2 * 9
    assert all(t.count("{}") == 1 and "circle" not in t for t in templates)
    prompts = ZeroShotPrompts(names, templates, "synthetic", 12, "shape")
    ids, mask = prompts.tokens
    assert ids.shape == (4 * 144, 12) and mask[:, :3].all()
    labels = np.arange(len(COMBINATIONS))
    assert [names[c] for c in prompts.class_of(labels)] == [c[0] for c in COMBINATIONS]


def test_zeroshot_prompts_from_config(tiny_config):
    from mmjax.tasks.zeroshot import ZeroShotPrompts

    config = tiny_config
    assert ZeroShotPrompts.from_config(config).num_classes == 4
    config.data.source = "files:/data/captions.jsonl"  # labels are not synthetic combinations
    assert ZeroShotPrompts.from_config(config) is None
    config.task.zeroshot.class_names = ["cat", "dog"]
    config.task.zeroshot.templates = ["a photo of a {}."]
    prompts = ZeroShotPrompts.from_config(config)
    assert prompts.num_classes == 2 and prompts.class_of(np.array([1, 0])).tolist() == [1, 0]
