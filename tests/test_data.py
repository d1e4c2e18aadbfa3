"""Built-in synthetic data, the shipped tokenizer and the grain pipeline."""

from __future__ import annotations

import json
from importlib import resources

import numpy as np
import pytest

from mmjax.data.pipeline import eval_batches, train_dataset
from mmjax.data.synthetic import COMBINATIONS, SyntheticShapes
from mmjax.data.tokenizer import TextTokenizer, build_synthetic_tokenizer
from tests.conftest import synthetic_data_cfg


def _data_cfg(**kw):
    cfg = synthetic_data_cfg(train_records=500, eval_records=40, image_size=32, prefetch=2)
    cfg.update(kw)
    return cfg


def test_records_are_deterministic_by_index():
    a, b = (
        SyntheticShapes("train", 100, image_size=32),
        SyntheticShapes("train", 100, image_size=32),
    )
    for i in (0, 17, 99):
        ra, rb = a[i], b[i]
        assert ra["caption"] == rb["caption"] and ra["label"] == rb["label"]
        np.testing.assert_array_equal(ra["image"], rb["image"])
    assert a[0]["image"].shape == (32, 32, 3) and a[0]["image"].dtype == np.uint8
    assert not np.array_equal(a[0]["image"], a[1]["image"])
    other_seed = SyntheticShapes("train", 100, image_size=32, seed=1)
    assert not np.array_equal(a[0]["image"], other_seed[0]["image"])


def test_splits_are_disjoint_streams_and_eval_captions_unique():
    train, ev = (
        SyntheticShapes("train", 300, image_size=32),
        SyntheticShapes("eval", 256, image_size=32),
    )
    assert not np.array_equal(train[0]["image"], ev[0]["image"])
    eval_labels = [ev[i]["label"] for i in range(256)]
    assert len(set(eval_labels)) == 256  # distinct attribute combinations
    with pytest.raises(ValueError, match="at most"):
        SyntheticShapes("eval", len(COMBINATIONS) + 1)
    with pytest.raises(IndexError, match="record 300"):
        train[300]


def test_caption_describes_the_image():
    src = SyntheticShapes("eval", 64, image_size=48)
    for i in range(64):
        r = src[i]
        shape, colour, size, where = COMBINATIONS[r["label"]]
        for part in (shape, colour, size, where):
            assert part in r["caption"]
        # The shape's colour is present in the image: some pixel is close to it.
        from mmjax.data.synthetic import COLOURS

        dist = np.abs(r["image"].astype(int) - np.array(COLOURS[colour])).max(-1)
        assert (dist < 45).sum() >= 10


def test_shipped_tokenizer_matches_the_grammar():
    shipped = resources.files("mmjax.data") / "assets" / "synthetic_tokenizer.json"
    assert json.loads(shipped.read_text()) == json.loads(build_synthetic_tokenizer().to_str())
    tok = TextTokenizer.synthetic(12)
    src = SyntheticShapes("train", 200, image_size=32)
    ids, mask = tok([src[i]["caption"] for i in range(200)])
    assert ids.shape == (200, 12) and ids.dtype == np.int32
    assert (ids != tok.tokenizer.token_to_id("[UNK]")).all()  # grammar fully covered
    assert ((ids == tok.eos_id).sum(1) == 1).all()
    assert (mask == (ids != tok.pad_id)).all()


def test_truncation_keeps_end_of_text():
    tok = TextTokenizer.synthetic(5)
    ids, mask = tok(["there is a small red circle at the top left"])
    assert ids[0, -1] == tok.eos_id and mask.all()


def test_pipeline_is_seeded_and_resumable():
    tok = TextTokenizer.synthetic(12)
    cfg = _data_cfg()
    first = iter(train_dataset(cfg, tok, 8, seed=3))
    batches = [next(first) for _ in range(3)]
    assert batches[0]["image"].shape == (8, 32, 32, 3)
    assert batches[0]["tokens"].shape == (8, 12)
    again = iter(train_dataset(cfg, tok, 8, seed=3))
    np.testing.assert_array_equal(next(again)["image"], batches[0]["image"])
    other = iter(train_dataset(cfg, tok, 8, seed=4))
    assert not np.array_equal(next(other)["image"], batches[0]["image"])
    # Restoring a saved state continues exactly where it left off.
    it = iter(train_dataset(cfg, tok, 8, seed=3))
    next(it)
    state = it.get_state()
    fresh = iter(train_dataset(cfg, tok, 8, seed=3))
    fresh.set_state(state)
    np.testing.assert_array_equal(next(fresh)["image"], batches[1]["image"])


def test_epochs_are_reshuffled():
    tok = TextTokenizer.synthetic(12)
    it = iter(train_dataset(_data_cfg(train_records=16), tok, 16, seed=0))
    e1, e2 = next(it)["label"], next(it)["label"]
    assert sorted(e1.tolist()) == sorted(e2.tolist())  # same records ...
    assert e1.tolist() != e2.tolist()  # ... in another order


def test_eval_batches_cover_every_record_once():
    tok = TextTokenizer.synthetic(12)
    batches = eval_batches(_data_cfg(eval_records=40), tok, 16)
    assert len(batches) == 3
    labels = np.concatenate([b["label"][b["valid"]] for b in batches])
    assert len(labels) == 40 and len(set(labels.tolist())) == 40


def test_global_batch_is_the_same_for_any_process_count(monkeypatch):
    """Two processes' shares of step t, stacked, are the one-process batch of step t."""
    import mmjax.data.pipeline as pipeline

    tok = TextTokenizer.synthetic(12)
    cfg = _data_cfg()
    single = iter(train_dataset(cfg, tok, 8, seed=5))
    want = [next(single)["label"] for _ in range(3)]
    shares = []
    for index in range(2):
        monkeypatch.setattr(pipeline.jax, "process_count", lambda: 2)
        monkeypatch.setattr(pipeline.jax, "process_index", lambda i=index: i)
        it = iter(train_dataset(cfg, tok, 8, seed=5))
        shares.append([next(it)["label"] for _ in range(3)])
    for step in range(3):
        assert shares[0][step].shape == (4,)
        np.testing.assert_array_equal(np.concatenate([s[step] for s in shares]), want[step])


def test_start_step_positions_the_pipeline():
    tok = TextTokenizer.synthetic(12)
    cfg = _data_cfg()
    it = iter(train_dataset(cfg, tok, 8, seed=2))
    batches = [next(it)["label"] for _ in range(4)]
    late = iter(train_dataset(cfg, tok, 8, seed=2, start_step=3))
    np.testing.assert_array_equal(next(late)["label"], batches[3])
