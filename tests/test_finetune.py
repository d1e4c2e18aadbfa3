"""Fine-tuning in the trainer: frozen params, optimizer state, accumulation, EMA, init_from."""

from __future__ import annotations

import flax.linen as nn
import jax
import numpy as np
import optax
import orbax.checkpoint as ocp
import pytest

from mmjax import config as config_lib
from mmjax.data.pipeline import train_dataset
from mmjax.data.tokenizer import load_tokenizer
from mmjax.optim.optimizer import make_optimizer
from mmjax.optim.param_rules import flat_params
from mmjax.parallel import sharding
from mmjax.tasks import build_task
from mmjax.train.accumulate import loss_and_grads
from mmjax.train.init_from import select_params
from mmjax.train.loop import init_train_state, make_plan, make_train_step, train
from tests.conftest import CONFIG

IMAGE_LOCKED = [("image/.*|image_proj/.*", None), (".*", {})]


def _setup(config, rules=None, accum_steps=1, ema_decay=0.0, batch_size=None):
    """(jitted step, state, batch) for ``config`` on a 1-device mesh."""
    overrides = [f"optim.accum_steps={accum_steps}", f"optim.ema_decay={ema_decay}"]
    config = config_lib.apply_overrides(config, overrides)
    if rules is not None:
        config.optim.rules = rules
    mesh = sharding.make_mesh(config.mesh)
    mesh_rules = sharding.logical_rules(config.mesh)
    task = build_task(config)
    plan = make_plan(task, config.optim)
    tx, schedule = make_optimizer(config.optim, 100, plan)
    state, shardings = init_train_state(task, tx, mesh, mesh_rules, 0, plan, ema=ema_decay > 0)
    tokenizer = load_tokenizer(config.data.tokenizer, config.model.text.context_length)
    batch_size = batch_size or config.train.batch_size
    batch = next(iter(train_dataset(config.data, tokenizer, batch_size, 0)))
    batch = sharding.global_batch(batch, mesh)
    with jax.set_mesh(mesh), nn.logical_axis_rules(mesh_rules):
        step = jax.jit(
            make_train_step(task, tx, schedule, accum_steps, ema_decay),
            in_shardings=(shardings, sharding.batch_sharding(mesh)),
            out_shardings=(shardings, sharding.replicated(mesh)),
        )
    return task, plan, step, state, batch


def _flat(tree) -> dict[str, np.ndarray]:
    return {k: np.asarray(v) for k, v in flat_params(tree).items()}


@pytest.fixture(scope="module")
def locked():
    """The tiny model with the image tower locked and an EMA: (plan, step, state, batch)."""
    _, plan, step, state, batch = _setup(
        config_lib.load_config(f"{CONFIG}:tiny"), IMAGE_LOCKED, ema_decay=0.5
    )
    return plan, step, state, batch


def test_frozen_params_are_bit_identical_and_have_no_optimizer_state(locked):
    plan, step, state, batch = locked
    assert plan.frozen and all(p.startswith("image") for p in plan.frozen)
    before = _flat(state.full_params())
    for _ in range(3):
        state, metrics = step(state, batch)
    after = _flat(state.full_params())
    for path in plan.frozen:
        np.testing.assert_array_equal(after[path], before[path], err_msg=path)
    assert any(not np.array_equal(after[p], before[p]) for p in plan.trainable)
    # Adam's mu and nu for each trainable param, plus two step counters; nothing frozen.
    leaves = jax.tree.leaves(state.opt_state)
    assert len(leaves) == 2 * len(plan.trainable) + 2
    assert set(_flat(state.params)) == set(plan.trainable)
    n_trainable = plan.num_params(plan.trainable)
    assert sum(x.size for x in leaves) == 2 * n_trainable + 2


def test_ema_tracks_trainable_params(locked):
    plan, step, state, batch = locked
    assert set(_flat(state.ema)) == set(plan.trainable)
    p0 = _flat(state.params)
    state, _ = step(state, batch)
    p1, ema = _flat(state.params), _flat(state.ema)
    for path in p0:
        np.testing.assert_allclose(ema[path], 0.5 * p0[path] + 0.5 * p1[path], rtol=1e-6)
    assert set(_flat(state.full_params(use_ema=True))) == set(plan.shapes)


def test_accumulating_4_micro_batches_equals_one_big_batch(tiny_config):
    task = build_task(tiny_config)
    params = jax.jit(lambda r: nn.unbox(task.init(r))["params"])(jax.random.PRNGKey(0))
    tokenizer = load_tokenizer(tiny_config.data.tokenizer, tiny_config.model.text.context_length)
    batch = next(iter(train_dataset(tiny_config.data, tokenizer, 64, 0)))
    rng = jax.random.PRNGKey(1)
    grad_fn = jax.jit(loss_and_grads, static_argnums=(0, 5))
    loss1, metrics1, grads1 = grad_fn(task, params, {}, batch, rng, 1)
    loss4, metrics4, grads4 = grad_fn(task, params, {}, batch, rng, 4)
    np.testing.assert_allclose(loss4, loss1, rtol=1e-6)
    for k in metrics1:
        np.testing.assert_allclose(metrics4[k], metrics1[k], rtol=1e-6, err_msg=k)
    norm = float(optax.tree.norm(grads1))
    for path, g1 in _flat(grads1).items():
        np.testing.assert_allclose(_flat(grads4)[path], g1, atol=1e-6 * norm, err_msg=path)
    # The whole AdamW step (clipping, decay) at the default peak lr of 2e-3. Adam divides
    # each gradient entry by its own magnitude, so entries near 0 turn fp32 summation-order
    # differences into update differences of order lr * 1e-3.
    tx, schedule = make_optimizer(
        config_lib.apply_overrides(tiny_config, ["optim.lr=2e-3"]).optim, 100
    )
    opt_state = tx.init(params)
    opt_state = opt_state[:-1] + (opt_state[-1]._replace(count=jax.numpy.asarray(5)),)
    assert float(schedule(5)) > 1.9e-3
    update = jax.jit(tx.update)
    update1, _ = update(grads1, opt_state, params)
    update4, _ = update(grads4, opt_state, params)
    new1, new4 = optax.apply_updates(params, update1), optax.apply_updates(params, update4)
    for path, p1 in _flat(new1).items():
        np.testing.assert_allclose(_flat(new4)[path], p1, atol=1e-6, err_msg=path)


def test_accumulation_averages_per_example_losses_for_other_tasks(tiny_config):
    class MeanSquares:  # a task with no forward/loss_from_outputs split
        def loss(self, params, batch, rng, train):
            err = batch["x"] @ params["w"] - batch["y"]
            return (err**2).mean(), {"max": err.max()}

    params = {"w": jax.random.normal(jax.random.PRNGKey(0), (3, 2))}
    batch = {
        "x": jax.random.normal(jax.random.PRNGKey(1), (8, 3)),
        "y": jax.random.normal(jax.random.PRNGKey(2), (8, 2)),
    }
    rng = jax.random.PRNGKey(3)
    loss1, _, g1 = loss_and_grads(MeanSquares(), params, {}, batch, rng, 1)
    loss4, _, g4 = loss_and_grads(MeanSquares(), params, {}, batch, rng, 4)
    np.testing.assert_allclose(loss4, loss1, rtol=1e-6)
    np.testing.assert_allclose(g4["w"], g1["w"], rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="not divisible by config.optim.accum_steps"):
        loss_and_grads(MeanSquares(), params, {}, batch, rng, 3)


def test_init_from_loads_the_image_tower_from_another_run(tiny_config, tmp_path):
    quick = ["train.eval_every=0", "train.log_every=5", "train.checkpoint_every=0"]
    pretrain = config_lib.apply_overrides(tiny_config, ["train.steps=5", *quick])
    train(pretrain, tmp_path / "pretrain")
    lit = config_lib.apply_overrides(
        tiny_config,
        ["train.steps=3", *quick, f"init_from={tmp_path / 'pretrain'}"],
    )
    lit.optim.rules = IMAGE_LOCKED
    lit.init_from_dont_load = ["text/.*", "text_proj/.*"]
    train(lit, tmp_path / "lit")

    pre = ocp.PyTreeCheckpointer().restore(tmp_path / "pretrain" / "checkpoints" / "5" / "state")
    got = ocp.PyTreeCheckpointer().restore(tmp_path / "lit" / "checkpoints" / "3" / "state")
    pre_params, frozen = _flat(pre["params"]), _flat(got["frozen"])
    assert frozen and all(p.startswith("image") for p in frozen)
    for path, value in frozen.items():
        np.testing.assert_array_equal(value, pre_params[path], err_msg=path)
    # text was not loaded: it started from the fresh init, not the pretrained weights
    text = _flat(got["params"])["text/token_embed/embedding"]
    assert not np.allclose(text, pre_params["text/token_embed/embedding"])


def test_select_params_reports_and_rejects_shape_mismatch():
    target = {"a/kernel": np.zeros((2, 3)), "b/bias": np.zeros(3), "c/x": np.zeros(1)}
    source = {"a/kernel": np.ones((2, 3)), "b/bias": np.ones(3), "extra": np.ones(2)}
    loaded, report = select_params(target, source, dont_load=["b/.*"])
    assert list(loaded) == ["a/kernel"]
    assert report == {
        "loaded": ["a/kernel"],
        "skipped": ["b/bias"],
        "new": ["c/x"],
        "unused": ["extra"],
    }
    with pytest.raises(ValueError, match=r"param 'a/kernel' has shape \(3, 2\)"):
        select_params(target, {"a/kernel": np.ones((3, 2))})


def test_init_from_hf_goes_through_mmjax_hf_load():
    import mmjax.hf
    from mmjax.train.init_from import load_source_params
    from tests.conftest import REPO

    path = REPO / "tests" / "fixtures" / "hf" / "clip-pt"
    got = load_source_params(f"hf:{path}")
    _, variables = mmjax.hf.load(path)
    want = _flat(variables["params"])
    assert got.keys() == want.keys() and "image/patch_embed/kernel" in got
    for key, value in want.items():
        np.testing.assert_array_equal(got[key], value, err_msg=key)
