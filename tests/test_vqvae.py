"""VQ-VAE tokenizer: nearest-code assignment, the straight-through gradient, the EMA codebook
update (formulas and the train step that applies it), eval metrics; each against NumPy."""

from __future__ import annotations

import json

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mmjax.config import apply_overrides, load_config
from mmjax.models.vqvae import (
    VQVAE,
    codebook_from_ema,
    ema_update,
    nearest_codes,
    restart_dead_codes,
    straight_through,
)
from mmjax.tasks import build_task

TINY = "configs/vqvae_synthetic.py:tiny"


def _np_nearest(z: np.ndarray, book: np.ndarray) -> np.ndarray:
    """argmin over codes of the explicit Euclidean distance, one vector at a time."""
    flat = z.reshape(-1, z.shape[-1]).astype(np.float64)
    out = [np.argmin(np.linalg.norm(book.astype(np.float64) - v, axis=1)) for v in flat]
    return np.asarray(out).reshape(z.shape[:-1])


def _np_ema(count, total, z, codes, decay):
    """The VQ-VAE paper's EMA (appendix A.1), code by code: N_k, m_k and e_k = m_k / N_k
    with sonnet's Laplace smoothing of N."""
    z = z.reshape(-1, z.shape[-1]).astype(np.float64)
    codes = codes.reshape(-1)
    k = len(count)
    new_n = np.array([decay * count[i] + (1 - decay) * np.sum(codes == i) for i in range(k)])
    new_m = np.stack([decay * total[i] + (1 - decay) * z[codes == i].sum(axis=0) for i in range(k)])
    return new_n, new_m


def _np_codebook(count, total, eps):
    n = count.sum()
    smoothed = (count + eps) / (n + len(count) * eps) * n
    return total / smoothed[:, None]


def test_nearest_codes_match_numpy_argmin():
    rng = np.random.default_rng(0)
    book = rng.normal(size=(17, 5)).astype(np.float32)
    z = rng.normal(size=(3, 4, 4, 5)).astype(np.float32)
    z[0, 0, 0] = book[11] + 1e-3  # a vector next to a code gets that code
    got = np.asarray(nearest_codes(jnp.asarray(z), jnp.asarray(book)))
    np.testing.assert_array_equal(got, _np_nearest(z, book))
    assert got.dtype == np.int32 and got.shape == (3, 4, 4) and got[0, 0, 0] == 11


def test_straight_through_value_is_quantized_and_gradient_passes_to_z():
    """L(x) = sum(a * x**2) at x = straight_through(z, q): the value is L(q) and dL/dz is
    dL/dx evaluated at q (2 a q), not at z."""
    rng = np.random.default_rng(1)
    z, q, a = (rng.normal(size=(2, 3, 4)).astype(np.float32) for _ in range(3))

    def loss(z, q):
        return jnp.sum(a * straight_through(z, q) ** 2)

    value, (dz, dq) = jax.value_and_grad(loss, argnums=(0, 1))(jnp.asarray(z), jnp.asarray(q))
    np.testing.assert_allclose(value, np.sum(a * q.astype(np.float64) ** 2), rtol=1e-5)
    np.testing.assert_allclose(dz, 2 * a * q, rtol=1e-5)
    np.testing.assert_array_equal(dq, np.zeros_like(q))


def test_model_gradient_wrt_encoder_output_is_decoder_gradient_at_the_codes():
    """Through the real model: d recon_loss / d z (the encoder output) equals d loss / d x of
    the decoder alone at x = quantized (where the forward pass decoded), and differs from
    the decoder's gradient at x = z (what an identity in place of the quantizer gives)."""
    task = build_task(load_config(TINY))
    params = nn.unbox(jax.jit(task.init)(jax.random.PRNGKey(0)))["params"]["vqvae"]
    model = task.model
    rng = np.random.default_rng(2)
    g = model.spec.grid
    z = jnp.asarray(rng.normal(scale=0.3, size=(2, g, g, model.spec.code_dim)), jnp.float32)
    target = jnp.asarray(rng.uniform(size=(2, 16, 16, 3)), jnp.float32)

    @jax.jit
    def recon_loss(z):
        out = model.apply({"params": params}, z, method=VQVAE.decode_latents)
        return jnp.sum((out["recon"] - target) ** 2)

    @jax.jit
    def decoder_loss(x):
        recon = model.apply({"params": params}, x, method=lambda m, e: m.decoder(e)) + 0.5
        return jnp.sum((recon - target) ** 2)

    decode = jax.jit(lambda z: model.apply({"params": params}, z, method=VQVAE.decode_latents))
    quantized = decode(z)["quantized"]
    np.testing.assert_allclose(recon_loss(z), decoder_loss(quantized), rtol=1e-6)
    dz = np.asarray(jax.grad(recon_loss)(z))
    np.testing.assert_allclose(dz, jax.grad(decoder_loss)(quantized), rtol=1e-5, atol=1e-7)
    assert not np.allclose(dz, jax.grad(decoder_loss)(z), rtol=1e-2, atol=1e-4)
    assert not np.allclose(np.asarray(quantized), np.asarray(z), atol=1e-2)


def test_ema_update_and_smoothed_codebook_match_numpy():
    rng = np.random.default_rng(3)
    k, d, decay, eps = 6, 3, 0.9, 1e-5
    count = rng.uniform(0.5, 2.0, size=k).astype(np.float32)
    total = rng.normal(size=(k, d)).astype(np.float32)
    z = rng.normal(size=(4, 5, d)).astype(np.float32)
    codes = rng.integers(0, k - 1, size=(4, 5)).astype(np.int32)  # code k-1 unused
    got_n, got_m = ema_update(*map(jnp.asarray, (count, total, z, codes)), decay)
    want_n, want_m = _np_ema(count, total, z, codes, decay)
    np.testing.assert_allclose(got_n, want_n, rtol=1e-5)
    np.testing.assert_allclose(got_m, want_m, rtol=1e-5, atol=1e-6)
    assert got_n[-1] == pytest.approx(decay * count[-1])  # an unused code only decays
    np.testing.assert_allclose(
        codebook_from_ema(got_n, got_m, eps), _np_codebook(want_n, want_m, eps), rtol=1e-5
    )


def test_dead_codes_restart_at_the_worst_represented_vectors_in_order():
    rng = np.random.default_rng(8)
    k, d = 7, 3
    count = np.array([2.0, 0.1, 3.0, 0.0, 0.2, 1.0, 0.05], np.float32)  # 1, 3, 4, 6 dead
    total = rng.normal(size=(k, d)).astype(np.float32)
    book = rng.normal(size=(k, d)).astype(np.float32)
    z = rng.normal(size=(2, 3, d)).astype(np.float32)
    codes = nearest_codes(jnp.asarray(z), jnp.asarray(book))
    got_n, got_m = restart_dead_codes(*map(jnp.asarray, (count, total, z, codes, book)), 0.5)
    flat = z.reshape(-1, d)
    err = [np.min(np.sum((book - v) ** 2, axis=1)) for v in flat]  # to the nearest code
    worst = sorted(range(len(flat)), key=lambda i: -err[i])
    want_n, want_m = count.copy(), total.copy()
    for rank, code in enumerate([1, 3, 4, 6]):
        want_n[code], want_m[code] = 1.0, flat[worst[rank]]
    np.testing.assert_array_equal(got_n, want_n)
    np.testing.assert_allclose(got_m, want_m, rtol=1e-6)
    # More dead codes than vectors: the worst vectors are reused in turn.
    few = jnp.asarray(flat[:3])
    many = restart_dead_codes(jnp.zeros(8), jnp.zeros((8, d)), few, codes[0], book, 0.5)
    order = sorted(range(3), key=lambda i: -err[i])
    np.testing.assert_allclose(many[1], flat[:3][[order[i % 3] for i in range(8)]], rtol=1e-6)


def test_train_step_applies_the_ema_update_and_leaves_the_codebook_out_of_the_optimizer():
    """One jitted train step: the frozen buffers become the NumPy EMA of the encoder outputs
    computed with the pre-step params; the optimizer changes the conv weights only."""
    from mmjax.optim.optimizer import make_optimizer
    from mmjax.parallel import sharding
    from mmjax.train.loop import init_train_state, make_plan, make_train_step

    config = apply_overrides(load_config(TINY), ["optim.warmup_steps=0"])  # lr > 0 at step 0
    task = build_task(config)
    plan = make_plan(task, config.optim)
    assert sorted(plan.frozen) == ["vqvae/quantizer/ema_count", "vqvae/quantizer/ema_sum"]
    tx, schedule = make_optimizer(config.optim, 10, plan)
    mesh = sharding.make_mesh(config.mesh)
    rules = sharding.logical_rules(config.mesh)
    state, _ = init_train_state(task, tx, mesh, rules, 0, plan)
    images = np.random.default_rng(4).integers(0, 256, size=(8, 16, 16, 3), dtype=np.uint8)
    batch = {"image": jnp.asarray(images)}
    before = jax.device_get(state.full_params())
    with jax.set_mesh(mesh), nn.logical_axis_rules(rules):
        new, _ = jax.jit(make_train_step(task, tx, schedule))(state, batch)
    q = before["vqvae"]["quantizer"]
    spec = task.model.spec
    z = np.asarray(
        task.model.apply({"params": before["vqvae"]}, images / 255.0, method=VQVAE.encode)
    )
    book = _np_codebook(q["ema_count"], q["ema_sum"], spec.ema_eps)
    want_n, want_m = _np_ema(q["ema_count"], q["ema_sum"], z, _np_nearest(z, book), spec.ema_decay)
    got = jax.device_get(new.frozen)["vqvae"]["quantizer"]
    np.testing.assert_allclose(got["ema_count"], want_n, rtol=1e-5)
    np.testing.assert_allclose(got["ema_sum"], want_m, rtol=1e-4, atol=1e-7)
    assert "quantizer" not in new.params["vqvae"]  # no optimizer state or update for it
    after = jax.device_get(new.full_params())["vqvae"]["encoder"]["to_codes"]["kernel"]
    assert not np.allclose(before["vqvae"]["encoder"]["to_codes"]["kernel"], after)


def test_deadzone_recon_loss_matches_numpy():
    """``recon_deadzone``: errors beyond the dead zone cost their excess squared, plus
    ``recon_mse_weight`` x the plain MSE; without it the loss is the plain MSE."""
    overrides = ["task.recon_deadzone=0.1", "task.recon_mse_weight=0.3"]
    task = build_task(apply_overrides(load_config(TINY), overrides))
    plain = build_task(apply_overrides(load_config(TINY), ["task.recon_deadzone=0"]))
    params = task.init(jax.random.PRNGKey(0))["params"]
    images = np.random.default_rng(1).integers(0, 256, (3, 16, 16, 3), dtype=np.uint8)
    batch = {"image": jnp.asarray(images)}
    loss, m = task.loss(params, batch, jax.random.PRNGKey(1))
    plain_loss, _ = plain.loss(params, batch, jax.random.PRNGKey(1))
    out = task.apply(params, jnp.asarray(images, jnp.float32) / 255.0)
    err = np.abs(np.asarray(out["recon"], np.float64) - images / 255.0)
    assert (err < 0.1).any() and (err > 0.1).any()  # both sides of the dead zone occur
    excess = np.where(err > 0.1, err - 0.1, 0.0)
    commit = 0.25 * float(m["commitment"])
    want = np.mean(excess**2) + 0.3 * np.mean(err**2) + commit
    assert float(loss) == pytest.approx(want, rel=1e-5)
    assert float(plain_loss) == pytest.approx(np.mean(err**2) + commit, rel=1e-5)


def test_eval_metrics_match_numpy_formulas():
    task = build_task(load_config(TINY))
    k = task.model.spec.codebook_size
    codes = np.array([[0, 0, 1, 2], [2, 2, 2, 5]])
    sq_err = np.array([0.01, 0.03])
    m = task.eval_metrics({"sq_err": sq_err, "codes": codes})
    p = np.array([2, 1, 4, 1]) / 8
    assert m["recon_mse"] == pytest.approx(0.02)
    assert m["psnr"] == pytest.approx(10 * np.log10(1 / 0.02))
    assert m["codebook_usage"] == pytest.approx(4 / k)
    assert m["perplexity"] == pytest.approx(np.exp(-np.sum(p * np.log(p))))


def test_train_tiny_config_resumes_with_the_same_codebook(tmp_path, capsys):
    """Resuming from step 10's checkpoint gives the buffers of 20 uninterrupted steps."""
    import shutil

    from mmjax.train.checkpoint import latest_step_dir, read_state
    from mmjax.train.loop import train

    overrides = ["train.steps=20", "train.checkpoint_every=10", "train.log_every=10"]
    config = apply_overrides(load_config(TINY), overrides)
    train(config, tmp_path / "straight")
    shutil.copytree(tmp_path / "straight", tmp_path / "resumed")
    shutil.rmtree(tmp_path / "resumed/checkpoints/20")  # as if stopped after step 10
    capsys.readouterr()
    train(config, tmp_path / "resumed")
    assert "at step 10" in capsys.readouterr().out  # resumed, not retrained

    def buffers(run):
        state = read_state(latest_step_dir(tmp_path / run / "checkpoints"))
        return state["frozen"]["vqvae"]["quantizer"]

    a, b = buffers("straight"), buffers("resumed")
    np.testing.assert_array_equal(a["ema_count"], b["ema_count"])
    np.testing.assert_array_equal(a["ema_sum"], b["ema_sum"])
    assert not np.allclose(a["ema_count"], 1.0)  # the EMA did run
    rows = [json.loads(x) for x in (tmp_path / "straight/metrics.jsonl").read_text().splitlines()]
    assert "eval/psnr" in rows[-1] and 0 <= rows[-1]["eval/codebook_usage"] <= 1
