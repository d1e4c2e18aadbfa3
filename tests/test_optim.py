"""Schedules, parameter rules, LLRD, weight-decay masks and optimizers against optax's own."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import pytest

from mmjax import config as config_lib
from mmjax.cli.info import param_shapes
from mmjax.optim.optimizer import decay_mask, ema_update, make_optimizer
from mmjax.optim.param_rules import llrd_multipliers, make_param_plan
from mmjax.optim.schedules import make_schedule
from tests.conftest import CONFIG


@pytest.fixture(scope="module")
def shapes():
    """Param shapes of the default two towers, pinned to 3 image layers with a class token
    and 2 text layers (the LLRD expectations below count layers)."""
    c = config_lib.load_config(CONFIG)
    c.model.image.update(depth=3, pool="cls")
    c.model.text.depth = 2
    return param_shapes(c)


def _optim(**overrides) -> ml_collections.ConfigDict:
    c = config_lib.load_config(CONFIG).optim
    c.update(overrides)
    return c


def _tree(seed: int) -> dict:
    """A small param-like tree: kernels, biases, a norm, an embedding, a scalar."""
    k = iter(jax.random.split(jax.random.PRNGKey(seed), 8))
    return {
        "a": {"dense": {"kernel": jax.random.normal(next(k), (4, 3)), "bias": jnp.ones(3)}},
        "b": {
            "ln": {"scale": jax.random.normal(next(k), (3,))},
            "attn": {"query": {"bias": jax.random.normal(next(k), (2, 3))}},
            "tok": {"embedding": jax.random.normal(next(k), (5, 3))},
        },
        "logit_scale": jnp.asarray(2.3),
    }


def _run(tx: optax.GradientTransformation, params: dict, steps: int = 3) -> dict:
    state = tx.init(params)
    update = jax.jit(tx.update)
    for i in range(steps):
        grads = jax.tree.map(lambda p, i=i: jnp.sin(p * (i + 1)) + 0.1, params)
        updates, state = update(grads, state, params)
        params = optax.apply_updates(params, updates)
    return params


def _assert_trees_equal(a, b, **tol):
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        if tol:
            np.testing.assert_allclose(x, y, **tol)
        else:
            np.testing.assert_array_equal(x, y)


# -- schedules ---------------------------------------------------------------------------


def test_schedules_warmup_decay_cooldown():
    cfg = dict(lr=1.0, warmup_steps=10, end_lr_fraction=0.1)
    cos = make_schedule({**cfg, "schedule": "cosine"}, 110)
    ref = optax.warmup_cosine_decay_schedule(0.0, 1.0, 10, 110, 0.1)
    for s in (0, 5, 10, 60, 110):
        assert float(cos(s)) == float(ref(s))
    lin = make_schedule({**cfg, "schedule": "linear"}, 110)
    np.testing.assert_allclose([lin(5), lin(10), lin(60), lin(110)], [0.5, 1.0, 0.55, 0.1])
    const = make_schedule({**cfg, "schedule": "constant", "cooldown_steps": 20}, 110)
    np.testing.assert_allclose(
        [const(5), const(50), const(90), const(100), const(110)], [0.5, 1, 1, 0.55, 0.1], 1e-6
    )
    rsqrt = make_schedule({**cfg, "schedule": "rsqrt", "timescale": 10}, 110)
    np.testing.assert_allclose([rsqrt(5), rsqrt(10), rsqrt(40)], [0.5, 1.0, 0.5], 1e-6)


def test_schedule_errors_name_the_key():
    with pytest.raises(ValueError, match="config.optim.schedule: unknown 'step'"):
        make_schedule(dict(lr=1.0, schedule="step"), 10)
    with pytest.raises(ValueError, match="warmup_steps"):
        make_schedule(dict(lr=1.0, schedule="cosine", warmup_steps=10), 10)
    with pytest.raises(ValueError, match="cooldown_steps"):
        make_schedule(dict(lr=1.0, schedule="cosine", cooldown_steps=3), 10)


# -- rules -------------------------------------------------------------------------------


def test_uncovered_params_and_unmatched_rules_are_errors(shapes):
    with pytest.raises(ValueError, match=r"cover no rule for .*image/"):
        make_param_plan(
            _optim(rules=[("text/.*", {}), ("(image|text)_proj/.*|logit_scale", {})]), shapes
        )
    with pytest.raises(ValueError, match=r"'img/\.\*' matches no parameter"):
        make_param_plan(_optim(rules=[("img/.*", None), (".*", {})]), shapes)
    with pytest.raises(ValueError, match=r"rules\[0\].*unknown keys \['lr'\]"):
        make_param_plan(_optim(rules=[(".*", {"lr": 1.0})]), shapes)
    with pytest.raises(ValueError, match=r"rules\[0\].*None \(frozen\) or a dict"):
        make_param_plan(_optim(rules=[(".*", 0.5)]), shapes)


def test_first_match_wins_and_table(shapes):
    plan = make_param_plan(_optim(rules=[("image/.*", None), ("image.*|.*", {})]), shapes)
    assert all(p.startswith("image/") for p in plan.frozen)
    assert "image_proj/kernel" in plan.trainable
    n_image = sum(int(np.prod(s)) for p, s in shapes.items() if p.startswith("image/"))
    assert plan.num_params(plan.frozen) == n_image
    table = plan.table()
    assert "'image/.*'" in table and "frozen" in table and f"{n_image:,}" in table


def test_weight_decay_mask_contents(shapes):
    plan = make_param_plan(_optim(), shapes)
    decayed = {p for p, wd in plan.weight_decay.items() if wd}
    assert decayed == {p for p in shapes if p.endswith("/kernel")}
    assert plan.weight_decay["image/encoder/layer_0/mlp/wi/kernel"] == 0.05
    for p in ("image/encoder/layer_0/attn/query/bias", "text/token_embed/embedding"):
        assert plan.weight_decay[p] == 0.0
    # Rules override the mask and scale the decay.
    rules = [("text/token_embed/.*", {"decay": True}), (".*mlp.*", {"wd_mult": 2.0}), (".*", {})]
    plan = make_param_plan(_optim(rules=rules), shapes)
    assert plan.weight_decay["text/token_embed/embedding"] == 0.05
    assert plan.weight_decay["text/encoder/layer_1/mlp/wo/kernel"] == 0.1
    assert plan.weight_decay["text/encoder/layer_1/mlp/wo/bias"] == 0.0
    mask = decay_mask(_tree(0))
    assert mask == {
        "a": {"dense": {"kernel": True, "bias": False}},
        "b": {
            "ln": {"scale": False},
            "attn": {"query": {"bias": False}},
            "tok": {"embedding": False},
        },
        "logit_scale": False,
    }


def test_llrd_multipliers_per_layer(shapes):
    d = 0.5
    mult = llrd_multipliers(shapes, d)
    expect = {
        "image/patch_embed/kernel": d**4,  # 3 image layers: embeddings lowest
        "image/cls_token": d**4,
        "image/ln_pre/scale": d**4,
        "image/encoder/layer_0/mlp/wi/kernel": d**3,
        "image/encoder/layer_2/attn/out/bias": d**1,
        "image/ln_post/scale": 1.0,
        "text/token_embed/embedding": d**3,  # 2 text layers
        "text/pos_embed": d**3,
        "text/encoder/layer_0/ln1/bias": d**2,
        "text/encoder/layer_1/mlp/wo/kernel": d**1,
        "text/ln_final/bias": 1.0,
        "image_proj/kernel": 1.0,
        "logit_scale": 1.0,
    }
    assert {p: mult[p] for p in expect} == expect
    plan = make_param_plan(
        _optim(llrd=d, rules=[("text/.*", {"lr_mult": 3.0}), (".*", {})]), shapes
    )
    assert plan.lr_mult["text/encoder/layer_0/ln1/bias"] == 3.0 * d**2
    assert plan.lr_mult["image/encoder/layer_1/ln1/bias"] == d**2


# -- optimizers --------------------------------------------------------------------------


def test_default_rules_equal_optax_adamw_bit_for_bit():
    cfg = _optim(weight_decay=0.1)
    schedule = make_schedule(cfg, 100)
    ref = optax.chain(
        optax.clip_by_global_norm(cfg.grad_clip_norm),
        optax.adamw(schedule, cfg.b1, cfg.b2, cfg.eps, weight_decay=0.1, mask=decay_mask),
    )
    tx, _ = make_optimizer(cfg, 100)
    _assert_trees_equal(_run(tx, _tree(0)), _run(ref, _tree(0)))


def test_lion_equals_optax_lion_and_adafactor_runs():
    cfg = _optim(name="lion", b2=0.99, grad_clip_norm=0.0)
    schedule = make_schedule(cfg, 100)
    ref = optax.lion(schedule, cfg.b1, cfg.b2, weight_decay=cfg.weight_decay, mask=decay_mask)
    tx, _ = make_optimizer(cfg, 100)
    _assert_trees_equal(_run(tx, _tree(1)), _run(ref, _tree(1)))
    tx, _ = make_optimizer(_optim(name="adafactor"), 100)
    out = _run(tx, _tree(2))
    assert all(np.isfinite(x).all() for x in jax.tree.leaves(out))
    with pytest.raises(ValueError, match="config.optim.name: unknown 'sgdd'"):
        make_optimizer(_optim(name="sgdd"), 100)


def test_lr_mult_and_own_schedule_equal_optax_multi_transform():
    cfg = _optim(grad_clip_norm=0.0)
    own = dict(schedule="constant", lr=1e-3, warmup_steps=0)
    cfg.rules = [("a/.*", {"lr_mult": 0.25}), ("logit_scale", {"schedule": own}), (".*", {})]
    tx, schedule = make_optimizer(cfg, 100)

    def adamw(lr):
        return optax.adamw(
            lr, cfg.b1, cfg.b2, cfg.eps, weight_decay=cfg.weight_decay, mask=decay_mask
        )

    ref = optax.multi_transform(
        {
            "a": adamw(lambda n: 0.25 * schedule(n)),
            "t": adamw(make_schedule({**dict(cfg), **own}, 100)),
            "rest": adamw(schedule),
        },
        {"a": "a", "b": "rest", "logit_scale": "t"},
    )
    _assert_trees_equal(_run(tx, _tree(3)), _run(ref, _tree(3)), rtol=1e-6, atol=1e-7)


def test_ema_update_formula_matches_optax_ema():
    params, ema = _tree(4), _tree(5)
    decay = 0.9
    got = ema_update(ema, params, decay)
    _assert_trees_equal(got, jax.tree.map(lambda e, p: 0.9 * e + 0.1 * p, ema, params))
    ref = optax.ema(decay, debias=False)
    state = ref.init(ema)._replace(ema=ema)
    _, state = ref.update(params, state)
    _assert_trees_equal(got, state.ema, rtol=1e-6)
