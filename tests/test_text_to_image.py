"""Text-to-image: cached sampling against the teacher-forced model, the code features,
guidance mixing, top-k, the null condition, and the 48px variants' shared tokenizer (the
tests over trained runs are in ``test_text_to_image_runs.py``)."""

from __future__ import annotations

import functools

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mmjax.config import load_config
from mmjax.models.generate import guided_logits, sample, top_k_filter
from mmjax.models.text_to_image import TextToImage
from mmjax.tasks import build_task
from tests.test_vqvae import _np_codebook

TINY = "configs/text_to_image_synthetic.py:tiny"
CAPTIONS = ["a small red circle at the top left", "a large blue cross on the right"]


@functools.cache
def _task_and_params():
    task = build_task(load_config(TINY))
    params = nn.unbox(jax.jit(task.init)(jax.random.PRNGKey(0)))["params"]
    return task, params


def _np_log_softmax(x: np.ndarray) -> np.ndarray:
    x = x.astype(np.float64)
    x = x - x.max(-1, keepdims=True)
    return x - np.log(np.exp(x).sum(-1, keepdims=True))


def _teacher_forced(task, params, codes, tokens, mask):
    """Full (uncached) forward: code logits ``[batch, n, K]`` (BOS column dropped)."""
    logits = task.model.apply({"params": params}, codes, tokens, mask, method=TextToImage.logits)
    return np.asarray(logits[..., : task.codebook_size])


@pytest.mark.parametrize("scale", [None, 2.5])
def test_sampled_log_probs_match_the_uncached_model(scale):
    """``generate`` steps the KV-cached decoder; the log-prob it reports for each drawn code
    equals the full teacher-forced forward's on the drawn sequence (guided: the NumPy
    mix of the caption's and the null caption's log-softmax inputs)."""
    task, params = _task_and_params()
    tokens, mask = (jnp.asarray(a) for a in task.tokenizer(CAPTIONS))
    gen = jax.jit(lambda p, t, m, r: task.generate(p, t, m, r, scale))
    out = gen(params, tokens, mask, jax.random.PRNGKey(3))
    codes = np.asarray(out["codes"])
    assert codes.shape == (2, task.num_codes) and codes.max() < task.codebook_size
    cond = _teacher_forced(task, params, codes, tokens, mask)
    if scale is None:
        logits = cond
    else:
        uncond = _teacher_forced(task, params, codes, *task.null_condition(2))
        logits = uncond + scale * (cond - uncond)
    want = np.take_along_axis(_np_log_softmax(logits), codes[..., None], -1)[..., 0]
    np.testing.assert_allclose(np.asarray(out["logp"]), want, atol=1e-5)
    assert out["images"].shape == (2, task.image_size, task.image_size, 3)


def test_cached_decode_steps_match_the_full_forward():
    """Position by position with the KV cache: the logits of every step equal the
    teacher-forced forward's (<= 1e-5)."""
    task, params = _task_and_params()
    tokens, mask = (jnp.asarray(a) for a in task.tokenizer(CAPTIONS))
    rng = np.random.default_rng(0)
    codes = rng.integers(0, task.codebook_size, size=(2, task.num_codes)).astype(np.int32)
    full = _teacher_forced(task, params, codes, tokens, mask)
    context = task.model.apply({"params": params}, tokens, mask, method=TextToImage.encode_text)
    step, cache = task._decoder_fns(params, context, mask)
    seq = np.concatenate([np.full((2, 1), task.codebook_size), codes[:, :-1]], axis=1)
    step = jax.jit(step)
    for i in range(task.num_codes):
        logits, cache = step(cache, jnp.asarray(seq[:, i], jnp.int32))
        np.testing.assert_allclose(np.asarray(logits), full[:, i], atol=1e-5, err_msg=str(i))


def test_code_features_add_a_projection_of_the_frozen_codebook_to_the_code_embeddings():
    """``model.code_features``: the decoder's (tied) code table is ``token_embed + F @ W``
    with ``F`` the codebook (sonnet's Laplace-smoothed EMA mean, in NumPy) and a zero row
    for BOS: folding ``F @ W`` into ``token_embed`` and zeroing ``W`` gives the same logits."""
    task, params = _task_and_params()
    assert task.model.code_features
    q = params["vqvae"]["quantizer"]
    count, total = np.asarray(q["ema_count"], np.float64), np.asarray(q["ema_sum"], np.float64)
    book = _np_codebook(count, total, task.config.model.vqvae.ema_eps)
    features = np.concatenate([book, np.zeros((1, book.shape[1]))])  # BOS: no code
    w = np.asarray(params["decoder"]["feature_proj"]["kernel"], np.float64)
    table = np.asarray(params["decoder"]["token_embed"]["embedding"]) + features @ w
    folded_decoder = dict(
        params["decoder"],
        token_embed={"embedding": jnp.asarray(table, jnp.float32)},
        feature_proj={"kernel": jnp.zeros_like(w, jnp.float32)},
    )
    folded = dict(params, decoder=folded_decoder)
    tokens, mask = (jnp.asarray(a) for a in task.tokenizer(CAPTIONS))
    codes = np.random.default_rng(2).integers(0, task.codebook_size, (2, task.num_codes))
    want = _teacher_forced(task, params, codes.astype(np.int32), tokens, mask)
    got = _teacher_forced(task, folded, codes.astype(np.int32), tokens, mask)
    np.testing.assert_allclose(got, want, atol=1e-5)
    zero_w = dict(params["decoder"], feature_proj={"kernel": jnp.zeros_like(w, jnp.float32)})
    without = _teacher_forced(task, dict(params, decoder=zero_w), codes, tokens, mask)
    assert np.abs(without - want).max() > 1e-3  # the projection changes the logits


def test_guided_logits_match_numpy():
    rng = np.random.default_rng(1)
    cond, uncond = rng.normal(size=(2, 3, 7)).astype(np.float32)
    for s in (0.0, 1.0, 3.0, -0.5):
        got = np.asarray(guided_logits(jnp.asarray(cond), jnp.asarray(uncond), s))
        np.testing.assert_allclose(got, uncond + s * (cond - uncond), rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(guided_logits(cond, uncond, 1.0), cond, atol=1e-6)


def _table_step(table):
    """A stateless model: row ``r``'s logits at position ``i`` are ``table[r, i]``."""

    def step(cache, tokens):
        return table[jnp.arange(table.shape[0]), cache["i"]], {"i": cache["i"] + 1}

    return step, {"i": jnp.zeros((table.shape[0],), jnp.int32)}


def test_top_k_sampling_only_emits_the_k_most_likely_tokens():
    rows, length, vocab, k = 3, 6, 11, 3
    table = np.random.default_rng(2).normal(size=(rows, length, vocab)).astype(np.float32)
    allowed = np.argsort(-table, axis=-1)[..., :k]  # [rows, length, k]

    @jax.jit
    def draw(key):
        ids, _ = sample(
            *_table_step(jnp.asarray(table)), key,
            batch_size=rows, max_len=length + 1, bos_id=0, temperature=2.0, top_k=k,
        )  # fmt: skip
        return ids[:, 1:]

    seen = np.stack([np.asarray(draw(jax.random.PRNGKey(s))) for s in range(60)])
    for r in range(rows):
        for i in range(length):
            emitted = set(seen[:, r, i].tolist())
            assert emitted <= set(allowed[r, i].tolist()), (r, i, emitted)
            assert len(emitted) == k, (r, i, emitted)  # every one of the k is reachable
    filtered = np.asarray(top_k_filter(jnp.asarray(table), k))
    assert ((filtered > -1e8).sum(-1) == k).all()


def test_caption_dropout_uses_the_null_caption_at_the_configured_rate():
    task, _ = _task_and_params()
    n = 2000
    ids, mask = task.tokenizer(CAPTIONS[:1] * n)
    tokens, masks = task.drop_captions(
        {"tokens": jnp.asarray(ids), "padding_mask": jnp.asarray(mask)}, jax.random.PRNGKey(0)
    )
    tokens, masks = np.asarray(tokens), np.asarray(masks)
    null_ids, null_mask = task.tokenizer([""])
    dropped = (tokens == null_ids).all(1)
    kept = (tokens == ids[0]).all(1)
    assert (dropped | kept).all() and (masks[dropped] == null_mask).all()
    assert dropped.mean() == pytest.approx(task.cond_drop, abs=0.03)
    assert null_ids[0, :2].tolist() == [ids[0, 0], task.tokenizer.eos_id]  # [BOS, EOS]


def test_48px_variants_share_the_tokenizer_the_generator_loads():
    """``init_from`` loads the tokenizer by path, so the generator's ``model.vqvae`` must be
    the tokenizer run's: the ``48px`` variants agree, and give a 12x12 code grid."""
    from mmjax.models.vqvae import VQVAESpec

    vq = load_config("configs/vqvae_synthetic.py:48px")
    t2i = load_config("configs/text_to_image_synthetic.py:48px")
    assert t2i.model.vqvae.to_dict() == vq.model.vqvae.to_dict()
    assert vq.data.image_size == t2i.data.image_size == 48
    assert VQVAESpec(**vq.model.vqvae.to_dict()).grid == 12
    assert build_task(t2i).num_codes == 144
