"""Captioning: KV-cached decoding, greedy / beam search under jit, BLEU / CIDEr, the task."""

from __future__ import annotations

import functools
import itertools
import json
import math
from collections import Counter

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from pycocoevalcap.bleu.bleu import Bleu

from mmjax.config import load_config
from mmjax.data.synthetic import SyntheticShapes
from mmjax.data.tokenizer import TextTokenizer
from mmjax.evaluation.caption_metrics import bleu4, cider, coco_tokenize
from mmjax.models.decoder import CaptionDecoder, DecoderSpec
from mmjax.models.generate import beam_search, cached_step, gather_beams, greedy
from mmjax.tasks.caption import CaptionExample, synthetic_references

PAD, BOS, EOS = 0, 1, 2
VOCAB, MAX_LEN, CTX = 7, 6, 5


@functools.cache
def _decoder(**kw) -> CaptionDecoder:
    """One instance per configuration, so that jitted helpers taking it statically hit their
    compilation caches across tests."""
    args = dict(
        vocab_size=VOCAB,
        width=16,
        depth=2,
        num_heads=2,
        mlp_dim=32,
        context_length=MAX_LEN,
        eos_id=EOS,
        unimodal_depth=1,
        tie_embeddings=False,
    )
    return CaptionDecoder(DecoderSpec(**{**args, **kw}))


@functools.partial(jax.jit, static_argnums=0)
def _apply_full(dec, params, context, ids):
    return dec.apply({"params": params}, ids, context)["logits"]


@functools.cache
def _setup(seed: int = 0, batch: int = 6, **kw):
    """A tiny random decoder, its params and a random context ``[batch, CTX, 12]``.

    Params are drawn with NumPy from the shapes (``jax.eval_shape`` of init): compiling
    Flax's initializers costs more than every test here."""
    dec = _decoder(**kw)
    rng = np.random.default_rng(seed)
    context = jnp.asarray(rng.standard_normal((batch, CTX, 12)), jnp.float32)
    tokens = jnp.zeros((batch, MAX_LEN), jnp.int32)
    shapes = nn.unbox(jax.eval_shape(dec.init, jax.random.PRNGKey(0), tokens, context))

    def draw(path, leaf):
        name = jax.tree_util.keystr(path)
        if "scale" in name:  # LayerNorm
            return 1.0 + 0.1 * rng.standard_normal(leaf.shape)
        std = leaf.shape[0] ** -0.5 if len(leaf.shape) >= 2 else 0.1
        return std * rng.standard_normal(leaf.shape)

    params = jax.tree_util.tree_map_with_path(draw, shapes["params"])
    # Sharpen the next-token distributions so that greedy, beam and exhaustive search
    # disagree now and then.
    params["ln_final"]["scale"] = params["ln_final"]["scale"] * 3.0
    return dec, jax.tree.map(lambda x: jnp.asarray(x, jnp.float32), params), context


def _step(dec, params, context, max_len=MAX_LEN):
    def apply(cache, tokens):
        variables = {"params": params} if cache is None else {"params": params, "cache": cache}
        out, new = dec.apply(variables, tokens, context, decode=True, mutable=["cache"])
        return out["logits"], new["cache"]

    return cached_step(apply, context.shape[0], max_len)


def _full_logits(dec, params, context, ids) -> np.ndarray:
    return np.array(_apply_full(dec, params, context, jnp.asarray(ids)))


def _sequence_logp(dec, params, context, ids: np.ndarray) -> np.ndarray:
    """Log-prob of each generated row (tokens after BOS up to and including EOS) under the
    uncached full-sequence model, with the pad token ruled out as in generation."""
    logits = _full_logits(dec, params, context, ids).astype(np.float64)
    logits[..., PAD] = -np.inf
    top = logits.max(-1, keepdims=True)
    logp = logits - top - np.log(np.exp(logits - top).sum(-1, keepdims=True))
    total = np.zeros(ids.shape[0])
    for r, row in enumerate(ids):
        for t in range(1, ids.shape[1]):
            total[r] += logp[r, t - 1, row[t]]
            if row[t] == EOS:
                break
    return total


@pytest.mark.parametrize(
    "kw", [{}, {"tie_embeddings": True, "scan_layers": True}, {"remat": "full"}]
)
def test_cached_decoding_matches_full_forward(kw):
    dec, params, context = _setup(**kw)
    ids = jax.random.randint(jax.random.PRNGKey(5), (6, MAX_LEN), 0, VOCAB)
    want = _full_logits(dec, params, context, ids)
    step, cache = _step(dec, params, context)
    assert jax.tree.leaves(cache), "no cache was created"
    step = jax.jit(step)
    for t in range(MAX_LEN):
        got, cache = step(cache, ids[:, t])
        np.testing.assert_allclose(np.asarray(got), want[:, t], atol=1e-5, rtol=1e-5)


def test_decode_step_rejects_more_than_one_position():
    dec, params, context = _setup()
    _, cache = _step(dec, params, context)
    with pytest.raises(ValueError, match=r"\[batch, 1\]"):
        dec.apply(
            {"params": params, "cache": cache},
            jnp.zeros((6, 2), jnp.int32),
            context,
            decode=True,
            mutable=["cache"],
        )


def _greedy_reference(dec, params, context, max_len: int) -> np.ndarray:
    """Python loop over positions, each the argmax of the uncached full-sequence logits."""
    ids = np.full((context.shape[0], max_len), PAD, np.int32)
    ids[:, 0] = BOS
    done = np.zeros(context.shape[0], bool)
    for t in range(max_len - 1):
        # Full-length input (one compile): causal, so position t sees only ids[:, :t + 1].
        logits = _full_logits(dec, params, context, ids)[:, t]
        logits[:, PAD] = -np.inf
        token = np.where(done, PAD, np.argmax(logits, -1))
        ids[:, t + 1] = token
        done |= token == EOS
    return ids


@functools.partial(
    jax.jit, static_argnums=(0, 1), static_argnames=("max_len", "beam_size", "cache_batch_axis")
)
def _run_search(kind, dec, params, context, max_len=MAX_LEN, beam_size=1, alpha=0.0, **kw):
    special = dict(bos_id=BOS, eos_id=EOS, pad_id=PAD, batch_size=context.shape[0])
    if kind == "greedy":
        step, cache = _step(dec, params, context, max_len)
        return greedy(step, cache, max_len=max_len, **special)
    step, cache = _step(dec, params, jnp.repeat(context, beam_size, axis=0), max_len)
    return beam_search(
        step, cache, max_len=max_len, beam_size=beam_size, alpha=alpha, **special, **kw
    )


def _search(kind: str, dec, params, context, alpha=0.0, **kw) -> tuple[np.ndarray, np.ndarray]:
    """``greedy`` or ``beam_search`` of the cached decoder, the whole search under jit
    (``alpha`` traced, so one compilation serves every length penalty)."""
    ids, logp = _run_search(kind, dec, params, context, alpha=jnp.float32(alpha), **kw)
    return np.asarray(ids), np.asarray(logp)


def test_greedy_under_jit_matches_python_reference():
    dec, params, context = _setup()
    ids, logp = _search("greedy", dec, params, context)
    want = _greedy_reference(dec, params, context, MAX_LEN)
    np.testing.assert_array_equal(ids, want)
    assert ids[:, 0].tolist() == [BOS] * 6 and not (ids[:, 1:] == BOS).all()
    np.testing.assert_allclose(logp, _sequence_logp(dec, params, context, ids), atol=1e-4)
    # After EOS only padding.
    for row in ids:
        if EOS in row.tolist():
            assert (row[row.tolist().index(EOS) + 1 :] == PAD).all()


def test_beams_score_at_least_as_well_as_greedy_on_a_random_decoder():
    dec, params, context = _setup(seed=1)
    g_ids, g_logp = _search("greedy", dec, params, context)
    b1_ids, b1_logp = _search("beam", dec, params, context, beam_size=1)
    assert (b1_logp >= g_logp - 1e-5).all()  # beam 1 follows greedy (tests/test_generate.py)
    b4_ids, b4_logp = _search("beam", dec, params, context, beam_size=4)
    np.testing.assert_allclose(b4_logp, _sequence_logp(dec, params, context, b4_ids), atol=1e-4)
    assert (b4_logp >= g_logp - 1e-5).all()
    assert (b4_logp > g_logp + 1e-3).any(), "beam search never beat greedy: test is too easy"


def test_wide_beam_finds_the_exhaustive_optimum():
    max_len = 4  # 3 generated tokens; 5 non-pad choices each -> 25 prefixes before the last
    dec, params, context = _setup(seed=2)
    ids, logp = _search("beam", dec, params, context, max_len=max_len, beam_size=25)
    choices = [t for t in range(VOCAB) if t != PAD]
    seqs = set()
    for tail in itertools.product(choices, repeat=max_len - 1):
        row = [BOS]
        for t in tail:
            row.append(t)
            if t == EOS:
                break
        seqs.add(tuple(row + [PAD] * (max_len - len(row))))
    seqs = np.asarray(sorted(seqs), np.int32)
    for r in range(2):
        ctx = jnp.repeat(context[r : r + 1], len(seqs), axis=0)
        scores = _sequence_logp(dec, params, ctx, seqs)
        np.testing.assert_allclose(logp[r], scores.max(), atol=1e-4)
        np.testing.assert_array_equal(ids[r], seqs[np.argmax(scores)])


def test_length_penalty_prefers_longer_finished_beams():
    dec, params, context = _setup(seed=1)
    plain_ids, _ = _search("beam", dec, params, context, beam_size=4)
    long_ids, _ = _search("beam", dec, params, context, beam_size=4, alpha=5.0)

    def lengths(ids):
        return np.sum((ids != PAD) & (ids != BOS), axis=1)

    assert (lengths(long_ids) >= lengths(plain_ids)).all()


def test_beam_search_on_a_scanned_stack_matches_the_unscanned_one():
    dec, params, context = _setup(seed=3)
    scanned = _decoder(scan_layers=True)
    stacked = dict(params)
    for stack, depth in (("unimodal", 1), ("multimodal", 2)):
        layers = [params[stack][f"layer_{i}"] for i in range(depth)]
        stacked[stack] = {"layers": {"block": jax.tree.map(lambda *x: jnp.stack(x), *layers)}}
    want = _search("beam", dec, params, context, beam_size=4)
    got = _search("beam", scanned, stacked, context, beam_size=4, cache_batch_axis=1)
    np.testing.assert_array_equal(got[0], want[0])
    np.testing.assert_allclose(got[1], want[1], atol=1e-5)


def test_gather_beams_reorders_rows_and_keeps_scalars():
    x = jnp.arange(2 * 3 * 2).reshape(6, 2)  # batch 2, beam 3
    beams = jnp.array([[2, 2, 0], [1, 0, 0]])
    out = gather_beams({"x": x, "i": jnp.array(7)}, beams)
    np.testing.assert_array_equal(out["x"], np.asarray(x)[[2, 2, 0, 4, 3, 3]])
    assert int(out["i"]) == 7


def test_generation_traces_the_model_a_bounded_number_of_times():
    dec, params, context = _setup()

    def count_traces(kind: str, max_len: int) -> int:
        calls = 0

        def apply(cache, tokens):
            nonlocal calls
            calls += 1
            variables = {"params": params} if cache is None else {"params": params, "cache": cache}
            out, new = dec.apply(variables, tokens, ctx, decode=True, mutable=["cache"])
            return out["logits"], new["cache"]

        k = 3 if kind == "beam" else 1
        ctx = jnp.repeat(context, k, axis=0)
        step, cache = cached_step(apply, ctx.shape[0], max_len)
        special = dict(bos_id=BOS, eos_id=EOS, pad_id=PAD, batch_size=6, max_len=max_len)
        if kind == "beam":
            jax.make_jaxpr(lambda c: beam_search(step, c, beam_size=k, **special))(cache)
        else:
            jax.make_jaxpr(lambda c: greedy(step, c, **special))(cache)
        return calls

    for kind in ("greedy", "beam"):
        short, long = count_traces(kind, 3), count_traces(kind, MAX_LEN)
        assert short == long <= 3, (kind, short, long)  # cache shapes + loop body


# --- metrics -------------------------------------------------------------------------


def test_bleu4_matches_a_hand_computed_example():
    hyp = "there is a large red circle at the top"  # 9 words
    ref = "there is a small red circle at the top left"  # 10 words
    # Clipped n-gram matches, counted by hand: 1-grams 8/9 (all but 'large'); 2-grams 6/8
    # (not 'a large', 'large red'); 3-grams 4/7 ('there is a', 'red circle at',
    # 'circle at the', 'at the top'); 4-grams 2/6 ('red circle at the', 'circle at the top').
    precisions = [8 / 9, 6 / 8, 4 / 7, 2 / 6]
    brevity = math.exp(1 - 10 / 9)
    want = brevity * math.exp(sum(math.log(p) for p in precisions) / 4)
    assert bleu4([hyp], [[ref]]) == pytest.approx(want, abs=1e-6)


def test_bleu4_multiple_and_ragged_references():
    refs = [
        ["a small red circle on the left", "on the left , a small red circle", ""],
        ["a large blue cross at the top"],
    ]
    hyps = ["on the left , a small red circle", "a large blue cross at the top"]
    assert bleu4(hyps, refs) == pytest.approx(1.0)
    # Against pycocoevalcap's own scorer (tests/test_metrics.py checks more sets).
    hyps = ["a small red square on the left", "a large blue cross at the bottom"]
    want = Bleu(4).compute_score(
        {i: [r for r in rs if r] for i, rs in enumerate(refs)},
        {i: [h] for i, h in enumerate(hyps)},
        verbose=0,
    )[0][3]
    assert bleu4(hyps, refs) == pytest.approx(want, rel=1e-9)
    assert 0 < want < 1
    with pytest.raises(ValueError, match="no .*reference"):
        bleu4(["x"], [[""]])


def _cider_d_reference(hyps: list[str], refs: list[list[str]], sigma: float = 6.0) -> float:
    """CIDEr-D from the paper (Vedantam et al. 2015, with the coco-caption clipping and
    Gaussian length penalty), written out independently of pycocoevalcap."""

    def grams(sentence: str, n: int) -> Counter:
        w = sentence.split()
        return Counter(tuple(w[i : i + n]) for i in range(len(w) - n + 1))

    log_images = math.log(len(refs))
    # Document frequency of each n-gram: the number of images whose references contain it.
    df = Counter(
        g for rs in refs for n in range(1, 5) for g in set().union(*(grams(r, n) for r in rs))
    )

    def tfidf(c: Counter) -> dict:
        return {g: f * (log_images - math.log(max(1.0, df[g]))) for g, f in c.items()}

    def cosine(h: dict, r: dict) -> float:
        dot = sum(min(v, r.get(k, 0.0)) * r.get(k, 0.0) for k, v in h.items())  # clipped
        norm = math.sqrt(sum(v * v for v in h.values())) * math.sqrt(sum(v * v for v in r.values()))
        return dot / norm if norm else 0.0

    scores = []
    for hyp, rs in zip(hyps, refs, strict=True):
        per_n = []
        for n in range(1, 5):
            sims = [
                cosine(tfidf(grams(hyp, n)), tfidf(grams(r, n)))
                * math.exp(-((len(hyp.split()) - len(r.split())) ** 2) / (2 * sigma**2))
                for r in rs
            ]
            per_n.append(sum(sims) / len(rs))
        scores.append(10.0 * sum(per_n) / 4)
    return sum(scores) / len(scores)


def test_cider_matches_an_independent_cider_d():
    refs = [
        ["a small red circle on the left", "there is a small red circle on the left"],
        ["a large blue cross at the top", "at the top , a large blue cross"],
        ["a small green square in the center"],
    ]
    hyps = ["a small red circle on the right", "a large blue cross at the top", "a square"]
    got = cider(hyps, refs)
    # COCO tokenizes first (the "," goes): the reference formula sees the tokenized text.
    tokenized = [[coco_tokenize(r) for r in rs] for rs in refs]
    assert got == pytest.approx(_cider_d_reference(hyps, tokenized), rel=1e-9)
    assert got > 0
    assert cider([r[0] for r in refs], refs) > got  # the references themselves score higher


# --- tokenizer and task ----------------------------------------------------------------


def test_tokenizer_decode_round_trip_and_generated_rows():
    tok = TextTokenizer.synthetic(12)
    captions = [SyntheticShapes("eval", 8, image_size=16)[i]["caption"] for i in range(8)]
    ids, _ = tok(captions)
    assert tok.decode(ids) == captions
    words = tok(["a red circle"])[0][0]  # [BOS] a red circle [EOS] pad..
    generated = np.array([words[0], words[1], 0, words[2], words[4], words[3], 0])
    assert tok.decode(generated) == ["a red"]  # cut at EOS, pad dropped
    assert tok.decode(np.array([[words[0]] + [0] * 5])) == [""]


def test_synthetic_references_cover_every_template():
    source = SyntheticShapes("train", 64, image_size=16)
    for i in range(64):
        record = source[i]
        assert record["caption"] in synthetic_references(record["label"])
    tok = TextTokenizer.synthetic(12)
    config = load_config("configs/caption_coca.py:tiny")
    example = CaptionExample(tok, config.data, train=False)
    out = example(source[0], np.random.default_rng(0))
    assert out["references"].shape == (3, 12)
    assert tok.decode(out["references"]) == synthetic_references(source[0]["label"])
    assert "references" not in CaptionExample(tok, config.data, train=True)(source[0], None)


def test_references_of_real_data_are_every_caption_of_the_image():
    from mmjax.tasks.caption import CaptionTask

    task = CaptionTask(load_config("configs/caption_coca.py:tiny,captioning_only"))
    tok = task.tokenizer
    captions = [
        "a small red circle at the top",
        "there is a small red circle at the top",
        "a large blue square on the left",
        "a small white cross in the center",
    ]
    tokens, _ = tok(captions)
    outputs = {"tokens": tokens, "image_id": np.array([7, 7, 3, 9])}
    first, refs = task.references(outputs)
    assert first.tolist() == [2, 0, 3]  # one row per image, by sorted image_id
    assert refs == [[captions[2]], captions[:2], [captions[3]]]
    # Generated rows scored once per image: a perfect caption for each gives BLEU 1.
    outputs.update(greedy=tokens[[0, 0, 2, 3]], beam=tokens[[1, 1, 2, 3]])
    outputs.update(greedy_logp=np.zeros(4), beam_logp=np.zeros(4))
    metrics = task.eval_metrics(outputs)
    assert metrics["bleu4"] == pytest.approx(1.0) and metrics["bleu4_beam"] == pytest.approx(1.0)
    assert "i2t_r1" not in metrics


def test_train_tiny_config_writes_caption_metrics(tmp_path):
    from mmjax.config import apply_overrides
    from mmjax.train.loop import train

    config = apply_overrides(
        load_config("configs/caption_coca.py:tiny"),
        ["train.steps=3", "train.eval_every=3", "train.log_every=3", "data.eval_records=16"],
    )
    train(config, tmp_path)
    rows = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    evals = [r for r in rows if "eval/bleu4" in r]
    assert evals and evals[-1]["step"] == 3
    for key in ("eval/bleu4", "eval/bleu4_beam", "eval/cider", "eval/i2t_r1", "eval/t2i_r1"):
        assert 0.0 <= evals[-1][key] <= (10.0 if "cider" in key else 1.0), key
    assert any("caption_loss" in r and "contrastive_loss" in r for r in rows)
