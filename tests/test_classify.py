"""The classify task: VQA soft scores and accuracy, synthetic questions / matching pairs,
the task's loss, and short end-to-end runs of its configs."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from mmjax.data import synthetic_tasks
from mmjax.data.synthetic import COMBINATIONS, TEMPLATES, SyntheticShapes
from mmjax.data.tokenizer import TextTokenizer
from mmjax.data.transforms import BadRecord
from mmjax.evaluation.vqa_metrics import vqa_accuracy, vqa_answer_scores
from mmjax.tasks.classify import ClassifyExample, ClassifyTask
from mmjax.tasks.classify_targets import VqaTarget

REPO = Path(__file__).resolve().parent.parent


def test_vqa_answer_scores_hand_computed():
    vocab = {"yes": 0, "no": 1, "2": 2, "at top": 3}  # normalized answers
    # 10 annotators: 2x yes, 6x no (one in capitals), 1x "two " (a number word), 1x unknown:
    # the official leave-one-out scores 0.6, 1, 0.3 (tests/test_metrics.py derives them).
    answers = ["yes", "yes", "no", "no", "No", "no", "no", "no", "two ", "maybe"]
    got = vqa_answer_scores(answers, vocab)
    np.testing.assert_allclose(got, [0.6, 1.0, 0.3, 0.0], rtol=1e-6)
    assert got.dtype == np.float32
    # Not 10 answers: the min(count / 3, 1) fallback; articles and spacing normalized.
    assert vqa_answer_scores(["at  the top"] * 3, vocab)[3] == 1.0
    np.testing.assert_allclose(vqa_answer_scores(["yes", "no", "no"], vocab)[:2], [1 / 3, 2 / 3])


def test_vqa_accuracy_hand_computed():
    scores = np.array(
        [
            [2 / 3, 1.0, 1 / 3, 0.0],  # predicted 0 -> 2/3
            [0.0, 0.0, 1.0, 0.0],  # predicted 2 -> 1
            [0.0, 1 / 3, 0.0, 1.0],  # predicted 1 -> 1/3
            [1.0, 0.0, 0.0, 0.0],  # predicted 3 -> 0
        ]
    )
    assert vqa_accuracy(np.array([0, 2, 1, 3]), scores) == pytest.approx((2 / 3 + 1 + 1 / 3) / 4)
    # One certain answer per question (one-hot): exact-match accuracy.
    onehot = np.eye(4)[[1, 2, 3, 0]]
    assert vqa_accuracy(np.array([1, 2, 0, 1]), onehot) == 0.5  # right, right, wrong, wrong


def test_synthetic_questions_match_their_records():
    tokenizer = TextTokenizer.synthetic(12)
    source = SyntheticShapes("eval", num_records=64, image_size=16)
    seen_types = set()
    for i in range(len(source)):
        label = source[i]["label"]
        question, answer, qtype = synthetic_tasks.synthetic_question(
            label, np.random.default_rng([0, i])
        )
        seen_types.add(qtype)
        attr = synthetic_tasks.QUESTION_TYPES[qtype]
        assert answer == synthetic_tasks.attributes(label)[attr] == COMBINATIONS[label][qtype]
        assert f" {answer} " not in f" {question} "  # never gives its answer away
        assert synthetic_tasks.ANSWER_TYPE[synthetic_tasks.ANSWERS.index(answer)] == qtype
        ids, _ = tokenizer([question])
        assert 1 not in ids[0], question  # no [UNK]: the tokenizer covers the questions
        # Same generator state, same question: examples are resumable.
        again = synthetic_tasks.synthetic_question(label, np.random.default_rng([0, i]))
        assert again == (question, answer, qtype)
    assert seen_types == {0, 1, 2, 3}


def test_match_negatives_differ_in_one_attribute_and_labels_balance():
    # Every caption the grammar can write -> the combination it describes.
    described = {
        t.format(**synthetic_tasks.attributes(label)): label
        for label in range(len(COMBINATIONS))
        for t in TEMPLATES
    }
    rng = np.random.default_rng(0)
    matches = []
    for _ in range(2000):
        label = int(rng.integers(len(COMBINATIONS)))
        original = "a small red circle in the center"
        text, match = synthetic_tasks.matching_pair(original, label, rng)
        matches.append(match)
        if match:
            assert text == original
            continue
        a, b = COMBINATIONS[label], COMBINATIONS[described[text]]
        assert sum(x != y for x, y in zip(a, b, strict=True)) == 1, (text, a)
    assert abs(np.mean(matches) - 0.5) < 0.04
    # Random negatives: any combination but the record's own.
    others = [synthetic_tasks.random_caption(7, rng) for _ in range(500)]
    assert all(described[text] == other != 7 for text, other in others)
    assert len({other for _, other in others}) > 250


def test_vqa_prior_baselines_hand_computed():
    # Types: colour (8 answers) x2 both "red", size (2 answers) x2 "small"/"large".
    red, small, large = (synthetic_tasks.ANSWERS.index(a) for a in ("red", "small", "large"))
    colour, size = synthetic_tasks.QUESTION_TYPES.index("colour"), 2
    got = synthetic_tasks.vqa_prior_baselines(
        np.array([red, red, small, large]), np.array([colour, colour, size, size])
    )
    assert got["majority"] == 0.5
    assert got["type_prior"] == 0.75  # red right twice, "small" once
    assert got["type_uniform"] == pytest.approx((1 / 8 + 1 / 8 + 1 / 2 + 1 / 2) / 4)


def test_attribute_labels():
    label = COMBINATIONS.index(("triangle", "blue", "large", "on the right"))
    assert synthetic_tasks.attribute_label(label, "shape") == 2
    assert synthetic_tasks.attribute_label(label, "where") == 5
    assert synthetic_tasks.attribute_label(label, "combination") == label
    assert synthetic_tasks.num_classes("colour") == 8
    with pytest.raises(ValueError, match="unknown synthetic label field 'hue'"):
        synthetic_tasks.attribute_label(label, "hue")


def _load(spec: str):
    from mmjax import config as config_lib

    return config_lib.load_config(str(REPO / "configs" / spec))


def _batch(task, config, n: int = 16, split: str = "train") -> dict[str, np.ndarray]:
    example = task.make_example(config.data, train=split == "train")
    source = SyntheticShapes(split, num_records=n, image_size=config.data.image_size)
    rows = [example(source[i], np.random.default_rng([0, i])) for i in range(n)]
    return {k: np.stack([r[k] for r in rows]) for k in rows[0]}


def test_examples_hold_the_right_targets():
    config = _load("vqa_cross_attention.py:tiny")
    task = ClassifyTask(config)
    tokenizer = TextTokenizer.synthetic(12)
    example = task.make_example(config.data, train=True)
    record = SyntheticShapes("train", num_records=4, image_size=32)[3]
    out = example(record, np.random.default_rng(5))
    question, answer, qtype = synthetic_tasks.synthetic_question(
        record["label"], np.random.default_rng(5)
    )
    assert out["target"].shape == (23,) and out["target"].sum() == 1.0
    assert synthetic_tasks.ANSWERS[int(out["target"].argmax())] == answer
    assert out["question_type"] == qtype
    np.testing.assert_array_equal(out["tokens"], tokenizer([question])[0][0])
    assert out["image"].dtype == np.uint8 and out["image"].shape == (32, 32, 3)

    config = _load("classify_image.py:tiny")
    task = ClassifyTask(config)
    example = task.make_example(config.data, train=True)
    out = example(record, np.random.default_rng(5))
    assert "tokens" not in out  # image only
    assert out["target"] == synthetic_tasks.SHAPES.index(COMBINATIONS[record["label"]][0])

    # A real (non-synthetic) VQA record: soft scores from the annotators' answers.
    real = ClassifyExample(
        VqaTarget(("red", "blue", "at the top"), synthetic=False), tokenizer, None
    )
    out = real(
        {
            "image": record["image"],
            "question": "what colour is the circle ?",
            "answers": ["red", "Red", "blue", "at the  top", "green"],
        },
        np.random.default_rng(0),
    )
    np.testing.assert_allclose(out["target"], [2 / 3, 1 / 3, 1 / 3], rtol=1e-6)
    assert out["question_type"] == -1
    with pytest.raises(BadRecord, match="answers"):
        real({"image": record["image"], "question": "why ?"}, np.random.default_rng(0))


def test_bad_records_and_configs_fail_by_name():
    from mmjax.config import ConfigError

    config = _load("classify_late_gated.py:tiny")
    example = ClassifyTask(config).make_example(config.data, True)
    corrupt = SyntheticShapes("train", num_records=8, image_size=32, corrupt_fraction=1.0)
    for i in range(4):  # truncated PNG, not an image, missing image, empty caption
        with pytest.raises(BadRecord):
            example(corrupt[i], np.random.default_rng(0))
    bad = config.copy_and_resolve_references()
    bad.task.target = "caption"
    with pytest.raises(ConfigError, match="config.task.target"):
        ClassifyTask(bad)
    image = _load("classify_image.py:tiny")
    image.task.num_classes = 5
    with pytest.raises(ConfigError, match="config.task.num_classes is 5"):
        ClassifyTask(image)
    image.task.update(num_classes=0, label_field="hue")
    with pytest.raises(ConfigError, match="label_field"):
        ClassifyTask(image)


def test_frozen_variant_freezes_exactly_the_image_encoder():
    from mmjax.train.loop import make_plan

    config = _load("classify_image.py:tiny,frozen")
    plan = make_plan(ClassifyTask(config), config.optim)
    assert plan.frozen and all(p.startswith("image/") for p in plan.frozen)
    assert plan.trainable and all(p.startswith("head/") for p in plan.trainable)


def test_loss_falls_on_a_fixed_batch():
    import flax.linen as nn
    import jax
    import optax

    config = _load("classify_tensor.py:tiny")  # the cheapest fused model to compile
    config.task.target = "vqa"
    task = ClassifyTask(config)
    batch = _batch(task, config)
    params = nn.unbox(jax.jit(task.init)(jax.random.PRNGKey(0)))["params"]
    assert {"image", "text", "fusion", "head"} == set(params)
    tx = optax.adam(3e-3)
    opt_state = tx.init(params)

    @jax.jit
    def step(params, opt_state, batch):
        (loss, metrics), grads = jax.value_and_grad(task.loss, has_aux=True)(
            params, batch, jax.random.PRNGKey(1)
        )
        updates, opt_state = tx.update(grads, opt_state)
        return optax.apply_updates(params, updates), opt_state, loss

    losses = []
    for _ in range(8):
        params, opt_state, loss = step(params, opt_state, batch)
        losses.append(float(loss))
    assert np.all(np.isfinite(losses))
    assert losses[-1] < 0.5 * losses[0], losses
    # Eval outputs and metrics on the same batch.
    metrics = task.eval_metrics(jax.tree.map(np.asarray, task.eval_step(params, batch)))
    assert 0.0 <= metrics["vqa_acc"] <= 1.0


@pytest.mark.parametrize(
    "spec,metric",
    [
        ("vqa_cross_attention.py:tiny", "eval/vqa_acc"),
        ("classify_image.py:tiny,frozen", "eval/acc"),
    ],
)
def test_train_writes_eval_metrics(spec, metric, tmp_path):
    from mmjax.train.loop import train

    config = _load(spec)
    config.train.update(steps=4, eval_every=2, log_every=2, checkpoint_every=4)
    result = train(config, tmp_path)
    rows = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    evals = [r for r in rows if metric in r]
    assert [r["step"] for r in evals] == [2, 4]
    assert 0.0 <= result[metric] <= 1.0
    assert all(np.isfinite(r["loss"]) for r in rows if "loss" in r)
