"""ITC + ITM (hard negatives) + MLM pretraining: masking statistics, negative mining,
losses and metrics against hand / NumPy references, and a short end-to-end run."""

from __future__ import annotations

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mmjax import config as config_lib
from mmjax.data.mlm_masking import mask_tokens, masking_ids
from mmjax.data.tokenizer import TextTokenizer
from mmjax.data.transforms import normalize_images
from mmjax.evaluation.evaluate import itm_accuracy
from mmjax.losses import weighted_cross_entropy
from mmjax.models.itm_mlm import ITMMLMModel, next_distinct, same_rows, sample_hard_negatives
from mmjax.tasks.itm_mlm import ITMMLMTask
from mmjax.train.checkpoint import latest_step_dir, read_state
from mmjax.train.loop import train
from tests.conftest import REPO

ITM_CONFIG = REPO / "configs" / "itm_mlm_synthetic.py"
MASK, VOCAB, SPECIAL = 31, 39, (0, 1, 2, 3)


def _binomial_ok(count: int, n: int, p: float, sigmas: float = 5.0) -> bool:
    return abs(count - n * p) <= sigmas * np.sqrt(n * p * (1 - p))


def _random_captions(rng: np.random.Generator, batch: int, seq: int) -> tuple[np.ndarray, ...]:
    """``[BOS] words [EOS] [PAD]...`` rows with random lengths; words avoid the specials."""
    words = np.setdiff1d(np.arange(VOCAB), (*SPECIAL, MASK))
    lengths = rng.integers(1, seq - 1, size=batch)  # words per row
    tokens = np.zeros((batch, seq), np.int32)
    pad = np.zeros((batch, seq), bool)
    for i, n in enumerate(lengths):
        tokens[i, : n + 2] = [2, *rng.choice(words, n), 3]
        pad[i, : n + 2] = True
    return tokens, pad


def test_masking_ratios_and_targets():
    tokens, pad = _random_captions(np.random.default_rng(0), 4096, 12)
    masked, targets, weights = jax.jit(
        lambda r, t, p: mask_tokens(
            r, t, p, mask_id=MASK, vocab_size=VOCAB, special_ids=SPECIAL, ratio=0.15
        )
    )(jax.random.PRNGKey(0), tokens, pad)
    masked, targets, weights = map(np.asarray, (masked, targets, weights))
    selected = weights > 0
    eligible = pad & ~np.isin(tokens, SPECIAL)
    assert not np.any(selected & ~eligible)  # specials and padding are never selected
    assert np.array_equal(masked[~selected], tokens[~selected])
    assert np.array_equal(targets[selected], tokens[selected])
    assert np.all(targets[~selected] == 0)
    n_eligible, n_sel = int(eligible.sum()), int(selected.sum())
    assert _binomial_ok(n_sel, n_eligible, 0.15), (n_sel, n_eligible)
    to_mask = masked[selected] == MASK
    unchanged = masked[selected] == tokens[selected]
    randomized = ~to_mask & ~unchanged
    assert _binomial_ok(int(to_mask.sum()), n_sel, 0.8)
    # A random replacement equals the original with probability 1/len(pool); count those
    # as the 10% "random" share: P(unchanged) = 0.1 + 0.1 / pool.
    pool = VOCAB - len(SPECIAL) - 1
    assert _binomial_ok(int(unchanged.sum()), n_sel, 0.1 + 0.1 / pool)
    assert _binomial_ok(int(randomized.sum()), n_sel, 0.1 - 0.1 / pool)
    replaced = masked[selected][randomized]
    assert not np.any(np.isin(replaced, (*SPECIAL, MASK)))
    # Replacements are uniform over the pool: every non-special id shows up.
    assert set(np.unique(replaced)) == set(np.setdiff1d(np.arange(VOCAB), (*SPECIAL, MASK)))


def test_masking_is_a_function_of_the_key():
    tokens, pad = _random_captions(np.random.default_rng(1), 8, 12)
    kw = dict(mask_id=MASK, vocab_size=VOCAB, special_ids=SPECIAL)
    a = mask_tokens(jax.random.PRNGKey(3), tokens, pad, **kw)
    b = mask_tokens(jax.random.PRNGKey(3), tokens, pad, **kw)
    c = mask_tokens(jax.random.PRNGKey(4), tokens, pad, **kw)
    assert all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))
    assert not np.array_equal(a[2], c[2])


def test_masking_ids_from_the_shipped_tokenizer():
    tok = TextTokenizer.synthetic(12)
    ids = masking_ids(tok, "[MASK]", ("[PAD]", "[UNK]", "[BOS]", "[EOS]"))
    assert ids == {"mask_id": 31, "special_ids": (0, 1, 2, 3, 31), "vocab_size": 39}
    with pytest.raises(ValueError, match="config.task.mask_token"):
        masking_ids(tok, "<mask>", ())
    with pytest.raises(ValueError, match="config.task.special_tokens"):
        masking_ids(tok, "[MASK]", ("[CLS]",))


def test_weighted_cross_entropy_matches_numpy():
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(3, 5, 7)).astype(np.float32)
    labels = rng.integers(0, 7, size=(3, 5))
    weights = (rng.random((3, 5)) < 0.5).astype(np.float32)
    loss, acc = weighted_cross_entropy(jnp.asarray(logits), jnp.asarray(labels), weights)
    logp = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
    ce = -np.take_along_axis(logp, labels[..., None], -1)[..., 0]
    np.testing.assert_allclose(loss, (ce * weights).sum() / weights.sum(), rtol=1e-5)
    right = logits.argmax(-1) == labels
    np.testing.assert_allclose(acc, (right * weights).sum() / weights.sum(), rtol=1e-6)
    zero_loss, zero_acc = weighted_cross_entropy(logits, labels, np.zeros((3, 5)))
    assert float(zero_loss) == 0.0 and float(zero_acc) == 0.0


def test_itm_accuracy_hand_computed():
    pos = np.array([[0.0, 1.0], [2.0, 1.0], [0.0, 3.0]])  # match, no match, match
    neg = np.array([[1.0, 0.0], [0.0, 1.0], [0.5, 0.5]])  # no, match (wrong), tie -> no
    assert itm_accuracy(pos, neg) == pytest.approx(4 / 6)
    constant = np.tile([[0.0, 1.0]], (4, 1))
    assert itm_accuracy(constant, constant) == 0.5


def test_hard_negatives_never_the_positive_or_a_duplicate_caption():
    tokens = jnp.asarray([[2, 5, 3], [2, 6, 3], [2, 5, 3], [2, 7, 3], [2, 8, 3]])
    exclude = same_rows(tokens)  # rows 0 and 2 hold the same caption
    logits = jnp.asarray(np.random.default_rng(0).normal(size=(5, 5)) * 3.0)
    draw = jax.jit(jax.vmap(sample_hard_negatives, in_axes=(0, None, None)))
    neg_text, neg_image, has_text, has_image = draw(
        jax.random.split(jax.random.PRNGKey(0), 500), logits, exclude
    )
    assert bool(jnp.all(has_text)) and bool(jnp.all(has_image))
    assert not np.any(np.asarray(exclude)[np.arange(5), np.asarray(neg_text)])
    assert not np.any(np.asarray(exclude)[np.asarray(neg_image), np.arange(5)])
    # A batch where every caption is the same has no negatives: flagged, own index.
    same = jnp.ones((3, 3), bool)
    nt, ni, ht, hi = sample_hard_negatives(jax.random.PRNGKey(1), jnp.zeros((3, 3)), same)
    assert not np.any(ht) and not np.any(hi)
    np.testing.assert_array_equal(nt, np.arange(3))


def test_hard_negative_frequencies_follow_the_softmax():
    n, draws = 6, 20_000
    logits = jnp.asarray(np.random.default_rng(1).normal(size=(n, n)) * 1.5, jnp.float32)
    exclude = jnp.eye(n, dtype=bool)
    neg_text, neg_image, _, _ = jax.jit(jax.vmap(sample_hard_negatives, in_axes=(0, None, None)))(
        jax.random.split(jax.random.PRNGKey(2), draws), logits, exclude
    )
    lg = np.asarray(logits, np.float64)
    for sampled, table in ((np.asarray(neg_text), lg), (np.asarray(neg_image), lg.T)):
        for i in range(n):
            masked = np.where(np.eye(n, dtype=bool)[i], -np.inf, table[i])
            p = np.exp(masked - masked.max())
            p /= p.sum()
            counts = np.bincount(sampled[:, i], minlength=n)
            assert counts[i] == 0
            allowed = p > 0
            expected = draws * p[allowed]
            chi2 = float(np.sum((counts[allowed] - expected) ** 2 / expected))
            assert chi2 < 25.0, (i, counts, expected)  # 4 dof: P(chi2 > 25) ~ 5e-5


def test_next_distinct_skips_equal_captions():
    exclude = same_rows(jnp.asarray([[1], [1], [2], [3]]))
    idx, found = next_distinct(exclude)
    np.testing.assert_array_equal(idx, [2, 2, 3, 0])
    assert bool(jnp.all(found))
    idx, found = next_distinct(jnp.ones((2, 2), bool))
    assert not np.any(found)


def test_config_errors_name_the_key():
    config = config_lib.load_config(f"{ITM_CONFIG}:tiny")
    bad = config_lib.apply_overrides(config, ["model.text.kind=clip"])
    with pytest.raises(ValueError, match="config.model.text.kind"):
        ITMMLMTask(bad)
    bad = config_lib.apply_overrides(config, ["model.fusion.width=48"])
    with pytest.raises(ValueError, match="config.model.fusion.width"):
        ITMMLMTask(bad)
    bad = config_lib.apply_overrides(config, ["task.mask_token=<mask>"])
    with pytest.raises(ValueError, match="config.task.mask_token"):
        ITMMLMTask(bad)


def test_tiny_config_trains_and_writes_eval_metrics(tmp_path):
    config = config_lib.load_config(f"{ITM_CONFIG}:tiny")
    config = config_lib.apply_overrides(
        config, ["train.steps=6", "train.log_every=3", "train.eval_every=6"]
    )
    result = train(config, tmp_path)
    rows = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    train_rows = [r for r in rows if "loss" in r]
    assert len(train_rows) == 2
    for key in ("itc_loss", "itm_loss", "mlm_loss", "itm_acc", "mlm_acc"):
        assert np.isfinite(train_rows[-1][key]), key
    evals = [r for r in rows if "eval/itm_acc" in r]
    assert [r["step"] for r in evals] == [6]
    for key in ("eval/itm_acc", "eval/i2t_r1", "eval/t2i_r10", "eval/mlm_acc"):
        assert 0.0 <= evals[-1][key] <= 1.0, key
    # The loss is the weighted sum of its parts (weights 1 in the config).
    last = train_rows[-1]
    parts = last["itc_loss"] + last["itm_loss"] + last["mlm_loss"]
    assert last["loss"] == pytest.approx(parts, rel=1e-5)
    assert result["eval/itm_acc"] == evals[-1]["eval/itm_acc"]
    _check_pretrain_outputs(config, read_state(latest_step_dir(tmp_path))["params"])


def _check_pretrain_outputs(config, params: dict) -> None:
    """``pretrain`` shapes and weights, and the MLM decoder is the text word embedding."""
    task = ITMMLMTask(config)
    assert sorted(params["mlm_head"]) == ["bias", "ln", "transform"]  # no own decoder matrix
    b = 6
    tokens, pad = _random_captions(np.random.default_rng(0), b, 12)
    images = np.random.default_rng(1).integers(0, 255, (b, 32, 32, 3), dtype=np.uint8)
    masked = task.mask(jax.random.PRNGKey(1), {"tokens": tokens, "padding_mask": pad})[0]

    @jax.jit
    def forward(p):
        return task.model.apply(
            {"params": p},
            normalize_images(images, "clip"),
            tokens,
            pad,
            masked,
            jax.random.PRNGKey(2),
            method=ITMMLMModel.pretrain,
        )

    out = forward(params)
    assert out["itm_logits"].shape == (3 * b, 2)
    assert out["mlm_logits"].shape == (b, 12, config.model.text.vocab_size)
    np.testing.assert_array_equal(out["itm_weights"], np.ones(3 * b))  # distinct captions
    bumped = jax.tree.map(lambda x: x, params)
    bumped["text"]["word_embed"]["embedding"] = params["text"]["word_embed"]["embedding"] * 2
    assert not np.allclose(forward(bumped)["mlm_logits"], out["mlm_logits"])
