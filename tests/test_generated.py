"""The generated video / audio / sentiment sets: determinism, what they show, their configs."""

from __future__ import annotations

import itertools
import json
import subprocess
import sys
from pathlib import Path

import jax
import numpy as np
import pytest

from mmjax.config import load_with_options
from mmjax.data.moving_shapes import COMBINATIONS, DIRECTIONS, MovingShapes
from mmjax.data.sentiment import SentimentPosts, label_of
from mmjax.data.sounds import COUNTS, Sounds
from mmjax.data.synthetic import COLOURS
from mmjax.data.tokenizer import load_tokenizer
from mmjax.tasks import build_task

ROOT = Path(__file__).resolve().parents[1]


def same(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(
        np.array_equal(a[k], b[k]) if isinstance(a[k], np.ndarray) else a[k] == b[k] for k in a
    )


@pytest.mark.parametrize(
    "make",
    [
        lambda split, seed: MovingShapes(split, 64, seed=seed, image_size=16, num_frames=4),
        lambda split, seed: Sounds(split, 36, seed=seed, sample_rate=8000),
        lambda split, seed: SentimentPosts(split, 64, seed=seed, image_size=32, sample_rate=8000),
    ],
    ids=["moving_shapes", "sounds", "sentiment"],
)
def test_records_are_a_function_of_seed_split_and_index(make):
    a, b = make("train", 0), make("train", 0)
    for i in (0, 5, 31):
        assert same(a[i], b[i])
    assert not same(a[5], make("train", 1)[5])
    assert not same(a[5], make("eval", 0)[5])
    assert not same(a[5], a[6])
    with pytest.raises(IndexError):
        a[len(a)]


def test_moving_shapes_move_in_the_captioned_direction():
    """The shape's colour mask moves along the caption's direction, and the eval split
    holds every one of the 256 captions once."""
    source = MovingShapes("eval", 256, image_size=32, num_frames=8)
    captions = {source[i]["caption"] for i in range(256)}
    assert len(captions) == len(COMBINATIONS) == 256
    for i in range(0, 256, 17):
        record = source[i]
        _, colour, direction = COMBINATIONS[record["label"]]
        assert direction in record["caption"] and record["answers"] == [direction]
        rgb = np.asarray(COLOURS[colour], np.float32)
        video = record["video"].astype(np.float32)
        near = np.abs(video - rgb).max(-1) < 40  # [frames, H, W]: the shape's pixels
        ys, xs = np.nonzero(near[0])
        ye, xe = np.nonzero(near[-1])
        move = np.array([ye.mean() - ys.mean(), xe.mean() - xs.mean()])
        want = np.array(DIRECTIONS[direction], np.float64)
        assert np.all(np.sign(np.round(move / 2)) == want), (record["caption"], move)


def test_sounds_hold_the_captioned_number_of_beeps():
    source = Sounds("eval", 36)
    for i in range(0, 36, 5):
        record = source[i]
        count = COUNTS[record["caption"].split()[0]]
        energy = np.convolve(record["audio"] ** 2, np.ones(80) / 80, mode="same")
        loud = energy > 0.25 * energy.max()
        onsets = np.count_nonzero(loud[1:] & ~loud[:-1]) + int(loud[0])
        assert onsets == count, record["caption"]


def test_sentiment_label_needs_all_three_cues():
    """The Bayes accuracy of any one or two cues is at most 5/9 (all three: 1); face = voice
    sets the label (sarcasm), and otherwise each cue changes it."""
    table = np.asarray([label_of(*cues) for cues in itertools.product(range(3), repeat=3)])
    table = table.reshape(3, 3, 3)  # [face, voice, text]
    assert np.bincount(table.ravel()).tolist() == [9, 9, 9]
    for kept in [(0,), (1,), (2,), (0, 1), (0, 2), (1, 2)]:
        dropped = tuple(a for a in range(3) if a not in kept)
        counts = np.stack([(table == k).sum(axis=dropped) for k in range(3)])  # [3, cells]
        bayes = counts.max(axis=0).sum() / 27
        assert bayes <= 5 / 9 + 1e-9, (kept, bayes)
    assert [label_of(c, c, t) for c in range(3) for t in range(3)] == [0, 0, 0, 1, 1, 1, 2, 2, 2]
    assert label_of(2, 2, 1) == 2  # "i love it" with a frown and a falling voice: negative
    for face, voice, text in itertools.product(range(3), repeat=3):
        if face != voice:  # any other text, or another face still unlike the voice, changes it
            label = label_of(face, voice, text)
            assert all(label_of(face, voice, t) != label for t in range(3) if t != text)
            others = [f for f in range(3) if f not in (face, voice)]
            assert all(label_of(f, voice, text) != label for f in others)
    source = SentimentPosts("train", 32)
    for i in range(8):
        record = source[i]
        assert record["label"] == label_of(*record["cues"])
        assert record["image"].shape == (32, 32, 3) and record["audio"].ndim == 1


def test_generated_tokenizer_covers_every_text():
    tok = load_tokenizer("generated", 12)
    texts = [MovingShapes("eval", 8)[i][k] for i in range(8) for k in ("caption", "question")]
    texts += [Sounds("eval", 8)[i]["caption"] for i in range(8)]
    texts += [SentimentPosts("eval", 8)[i]["caption"] for i in range(8)]
    ids, _ = tok(texts)
    assert not (ids == 1).any()  # no [UNK]


@pytest.mark.parametrize(
    "config,arg",
    [
        ("audio_text_synthetic.py", "tiny"),
        ("sentiment_trimodal.py", "tiny"),
        ("sentiment_trimodal.py", "early,tiny"),
        ("sentiment_trimodal.py", "tensor,no_image,tiny"),
        ("video_qa_synthetic.py", "tiny"),
    ],
)
def test_configs_build_examples_and_trace_a_loss(config, arg):
    """Each config's task makes examples from its generated records, and its loss traces
    on a batch of them (shapes only: jax.eval_shape)."""
    c, _ = load_with_options(ROOT / "configs" / config, arg, {}, config)
    task = build_task(c)
    from mmjax.data.pipeline import build_source

    source = build_source(c.data, "train")
    example = task.make_example(c.data, train=True)
    rows = [example(source[i], np.random.default_rng(i)) for i in range(2)]
    batch = {k: np.stack([r[k] for r in rows]) for k in rows[0]}
    params = jax.eval_shape(task.init, jax.random.PRNGKey(0))
    params = jax.tree.map(
        lambda b: b.value if hasattr(b, "value") else b,
        params,
        is_leaf=lambda b: hasattr(b, "value"),
    )["params"]
    loss, _ = jax.eval_shape(task.loss, params, batch, jax.random.PRNGKey(0))
    assert loss.shape == ()


def test_video_text_tiny_trains_and_evaluates(tmp_path):
    """One subprocess: the tiny video-text config trains, evaluates recall and writes
    metrics (the whole path: generated source, video tower, contrastive task)."""
    work = tmp_path / "run"
    cmd = [sys.executable, "-m", "mmjax.cli", "train", "--config"]
    cmd += [str(ROOT / "configs/video_text_synthetic.py:tiny"), "--workdir", str(work)]
    subprocess.run(cmd, check=True, timeout=900, capture_output=True)
    rows = [json.loads(line) for line in (work / "metrics.jsonl").read_text().splitlines()]
    assert any("eval/t2i_r1" in r for r in rows)
    losses = [r["loss"] for r in rows if "loss" in r]  # eval rows carry no train loss
    assert losses and np.all(np.isfinite(losses))
