"""Layer scan: stacked params give the same loss, gradients, LLRD, HF round trip and
``init_from`` layout as the unrolled stack (split from test_sharding.py so that the two
pytest workers share the long compiles)."""

from __future__ import annotations

import jax
import numpy as np
import pytest

from tests.test_sharding import FIXTURES, _batch, _flat, _loss_and_grads, _params, _tiny


def test_scan_layers_stacks_params_and_gives_the_same_loss():
    from mmjax.hf.api import unflatten
    from mmjax.hf.keymap import stack_layers, unstack_layers

    params = _params(_tiny())
    scanned_shapes = {k: v.shape for k, v in _flat(_params(_tiny(scan_layers=True))).items()}
    stacked = stack_layers(_flat(params))
    assert {k: v.shape for k, v in stacked.items()} == scanned_shapes
    assert scanned_shapes["image/encoder/layers/block/mlp/wi/kernel"] == (3, 32, 64)
    loss, grads = _loss_and_grads(_tiny(), params)
    loss_scan, grads_scan = _loss_and_grads(_tiny(scan_layers=True), unflatten(stacked))
    np.testing.assert_allclose(float(loss_scan), float(loss), atol=1e-6)
    got = unstack_layers(_flat(grads_scan))
    for k, g in _flat(grads).items():
        np.testing.assert_allclose(got[k], g, atol=1e-5, rtol=1e-4, err_msg=k)


def _train(cfg, params, steps=3):
    """``steps`` train steps (AdamW, the config's rules and LLRD) from ``params``."""
    from mmjax.optim.optimizer import make_optimizer
    from mmjax.tasks import build_task
    from mmjax.train.loop import TrainState, make_plan, make_train_step

    task = build_task(cfg)
    plan = make_plan(task, cfg.optim)
    tx, schedule = make_optimizer(cfg.optim, 10, plan)
    step = jax.jit(make_train_step(task, tx, schedule))
    trainable, frozen = plan.split(params)
    rng = jax.random.PRNGKey(0)
    state = TrainState(jax.numpy.zeros((), "int32"), trainable, tx.init(trainable), rng, frozen)
    for i in range(steps):
        state, _ = step(state, _batch(seed=1 + i))  # one shape: one compile, new data
    return plan, state.params


def test_llrd_applies_per_layer_along_the_scanned_stack():
    """LLRD with ``scan_layers``: one multiplier per slice of the stacked layers axis, so a
    scanned run trains exactly as the unrolled one (it used to get multiplier 1)."""
    from mmjax.hf.api import unflatten
    from mmjax.hf.keymap import stack_layers, unstack_layers

    d = 0.5
    flat, scanned = _params(_tiny()), _tiny(scan_layers=True)
    unrolled = _tiny()
    for cfg in (scanned, unrolled):
        cfg.optim.update(llrd=d, warmup_steps=0)
    plan, want = _train(unrolled, flat)
    plan_scan, got = _train(scanned, unflatten(stack_layers(_flat(flat))))
    assert plan_scan.lr_mult["image/encoder/layers/block/mlp/wi/kernel"] == (d**3, d**2, d)
    assert plan.lr_mult["image/encoder/layer_0/mlp/wi/kernel"] == d**3
    assert plan_scan.lr_mult["image/patch_embed/kernel"] == d**4
    got = unstack_layers(_flat(got))
    moved = 0.0
    for k, w in _flat(want).items():
        # atol: attention key biases get no gradient (softmax ignores them), only noise
        np.testing.assert_allclose(got[k], w, atol=1e-5, rtol=1e-4, err_msg=k)
        moved = max(moved, float(np.abs(w - _flat(flat)[k]).max()))
    assert moved > 1e-3  # the steps trained


def test_llrd_that_reaches_no_layer_is_an_error():
    from mmjax.optim.param_rules import make_param_plan

    cfg = _tiny()
    cfg.optim.llrd = 0.5
    shapes = {"backbone/conv_0/kernel": (3, 3, 3, 8), "head/kernel": (8, 2)}
    with pytest.raises(ValueError, match=r"llrd = 0.5 reaches no layer"):
        make_param_plan(cfg.optim, shapes)


@pytest.mark.parametrize("name", ["clip-pt", "bert-pt"])
def test_hf_weights_load_into_a_scanned_model_and_save_back(name, tmp_path):
    from mmjax import hf
    from mmjax.hf.api import dummy_inputs

    module, variables = hf.load(FIXTURES / name)
    scanned, scanned_vars = hf.load(FIXTURES / name, scan_layers=True)
    assert any("/layers/block/" in k for k in _flat(scanned_vars))
    assert not any("/layer_0/" in k for k in _flat(scanned_vars))
    args, kwargs = dummy_inputs(module)
    args = tuple(np.ones(a.shape, a.dtype) for a in args)
    ref = module.apply(variables, *args, **kwargs)
    got = scanned.apply(scanned_vars, *args, **kwargs)
    for a, b in zip(jax.tree.leaves(ref), jax.tree.leaves(got), strict=True):
        np.testing.assert_allclose(np.asarray(b), np.asarray(a), atol=1e-5)
    hf.save(tmp_path, scanned, scanned_vars)
    _, reloaded = hf.load(tmp_path)
    for k, v in _flat(variables).items():
        np.testing.assert_allclose(_flat(reloaded)[k], v, atol=0, err_msg=k)


def test_init_from_matches_the_layer_layout():
    from mmjax.optim.param_rules import flat_params
    from mmjax.train.init_from import match_layer_layout

    plain = flat_params(_params(_tiny()))
    scanned = flat_params(_params(_tiny(scan_layers=True)))
    stacked = match_layer_layout(plain, scanned)
    assert {k: v.shape for k, v in stacked.items()} == {k: v.shape for k, v in scanned.items()}
    back = match_layer_layout(stacked, plain)
    for k, v in plain.items():
        np.testing.assert_array_equal(back[k], v)
    assert match_layer_layout(plain, plain) is plain


def test_info_prints_mesh_param_specs_and_bytes(capsys):
    from mmjax.cli.info import print_info

    print_info(_tiny(scan_layers=True))
    out = capsys.readouterr().out
    assert "mesh: data=1, fsdp=1, tensor=1" in out
    assert "params/image/encoder/layers/block/mlp/wi/kernel" in out
    assert "per device of" in out
