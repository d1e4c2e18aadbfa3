"""Meshes and remat: the same numbers on every layout (layer scan: test_scan_layers.py)."""

from __future__ import annotations

import json
from pathlib import Path

import flax.linen as nn
import jax
import numpy as np
import pytest

from tests.conftest import CONFIG, run_python

FIXTURES = Path(__file__).parent / "fixtures" / "hf"

MESHES_CODE = """
import os
os.environ["XLA_FLAGS"] += " --xla_backend_optimization_level=0"  # compile faster
import json, jax, numpy as np, flax.linen as nn
from mmjax import config as C
from mmjax.parallel import sharding
from mmjax.train.accumulate import loss_and_grads
from mmjax.optim.optimizer import make_optimizer
from mmjax.tasks import build_task
from mmjax.train.loop import TrainState, init_train_state, make_plan, make_train_step

cfg = C.load_config("CONFIG:tiny")
task = build_task(cfg)
plan = make_plan(task, cfg.optim)
tx, schedule = make_optimizer(cfg.optim, 10, plan)
train_step = make_train_step(task, tx, schedule)


def step_and_grads(state, batch):  # one compile: the step, then the gradients it reaches
    state, metrics = train_step(state, batch)
    loss, _, grads = loss_and_grads(task, state.params, state.frozen, batch, state.rng)
    return state, metrics, loss, grads


def boxed_state(rng):
    trainable, frozen = plan.split(task.init(rng)["params"])
    return TrainState(jax.numpy.zeros((), "int32"), trainable, tx.init(trainable), rng, frozen)


rng = np.random.default_rng(0)
batches = [
    dict(
        image=rng.integers(0, 256, (16, 32, 32, 3), dtype=np.uint8),
        tokens=rng.integers(4, 32, (16, 12)).astype(np.int32),
        padding_mask=np.arange(12)[None] < rng.integers(3, 13, (16, 1)),
    )
    for _ in range(3)
]
rules = sharding.DEFAULT_RULES
meshes = {
    "1dev": (dict(data=1, fsdp=1, tensor=1), jax.devices()[:1]),
    "data=8": (dict(data=8, fsdp=1, tensor=1), None),
    "fsdp=8": (dict(data=1, fsdp=8, tensor=1), None),
    "data=2,fsdp=2,tensor=2": (dict(data=2, fsdp=2, tensor=2), None),
    "data=4,tensor=2": (dict(data=4, fsdp=1, tensor=2), None),
}
out, host_state = {}, None
for name, (shape, devices) in meshes.items():
    mesh = sharding.make_mesh(shape, devices)
    if host_state is None:  # init once (sharded init itself: the 1-device run); reshard it
        state, shardings = init_train_state(task, tx, mesh, rules, 0, plan)
        host_state = jax.device_get(state)
    with jax.set_mesh(mesh), nn.logical_axis_rules(rules):
        abstract = jax.eval_shape(boxed_state, jax.random.PRNGKey(0))
        shardings = sharding.logical_shardings(abstract, mesh, rules)
        state = jax.device_put(host_state, shardings)
        data = sharding.batch_sharding(mesh)
        step = jax.jit(
            step_and_grads,
            in_shardings=(shardings, data),
            out_shardings=(shardings, sharding.replicated(mesh), None, None),
        )
        losses = []
        for b in batches:
            state, metrics, loss, grads = step(state, sharding.global_batch(b, mesh))
            losses.append(float(metrics["loss"]))
    leaves = jax.tree.leaves((state.params, state.opt_state))
    total = sum(x.nbytes for x in leaves)
    dev0 = mesh.devices.flat[0]
    on_dev0 = sum(s.data.nbytes for x in leaves for s in x.addressable_shards if s.device == dev0)
    replicated = sum(x.nbytes for x in leaves if x.sharding.is_fully_replicated)
    flat = {jax.tree_util.keystr(p): np.asarray(g).tolist()
            for p, g in jax.tree_util.tree_leaves_with_path(grads)}
    out[name] = dict(losses=losses, loss=float(loss), grads=flat, total=total,
                     dev0=on_dev0, replicated=replicated)
print(json.dumps(out))
"""


def test_meshes_give_the_same_loss_and_gradients():
    """CLIP (tiny), 3 steps on five meshes of 8 fake CPU devices (and one
    device): losses and gradients agree to 1e-5; under fsdp=8 a device holds 1/8 of the
    params + optimizer state, plus the tensors too small to split."""
    out = json.loads(run_python(MESHES_CODE.replace("CONFIG", str(CONFIG)), devices=8))
    ref = out.pop("1dev")
    for name, got in out.items():
        np.testing.assert_allclose(got["losses"], ref["losses"], atol=1e-5, err_msg=name)
        np.testing.assert_allclose(got["loss"], ref["loss"], atol=1e-5, err_msg=name)
        for path, g in ref["grads"].items():
            np.testing.assert_allclose(got["grads"][path], g, atol=1e-5, err_msg=f"{name} {path}")
    fsdp = out["fsdp=8"]
    ratio = fsdp["dev0"] / fsdp["total"]
    print(f"fsdp=8: {fsdp['dev0']} of {fsdp['total']} bytes on device 0 ({ratio:.3f})")
    assert fsdp["dev0"] <= fsdp["total"] / 8 + fsdp["replicated"], fsdp
    assert ratio < 0.25, ratio


def _tiny(**model):
    from mmjax import config as config_lib

    cfg = config_lib.load_config(f"{CONFIG}:tiny")
    cfg.model.image.depth = 3
    cfg.model.text.depth = 2
    cfg.model.update(model)
    return cfg


def _batch(n=4, seed=1):
    rng = np.random.default_rng(seed)
    return dict(
        image=rng.integers(0, 256, (n, 32, 32, 3), dtype=np.uint8),
        tokens=rng.integers(4, 32, (n, 12)).astype(np.int32),
        padding_mask=np.arange(12)[None] < rng.integers(3, 13, (n, 1)),
    )


def _loss_and_grads(cfg, params):
    from mmjax.tasks import build_task

    task = build_task(cfg)
    fn = jax.jit(jax.value_and_grad(lambda p, b: task.loss(p, b, jax.random.PRNGKey(0))[0]))
    return fn(params, _batch())


def _params(cfg):
    from mmjax.tasks import build_task

    return nn.unbox(build_task(cfg).init(jax.random.PRNGKey(0)))["params"]


def _flat(tree):
    from mmjax.hf.api import flatten

    return {k: np.asarray(v) for k, v in flatten(tree).items()}


@pytest.mark.parametrize("remat", ["full", "dots_saveable"])
def test_remat_gives_the_same_gradients(remat):
    params = _params(_tiny())
    loss, grads = _loss_and_grads(_tiny(), params)
    loss_r, grads_r = _loss_and_grads(_tiny(remat=remat), params)
    np.testing.assert_allclose(float(loss_r), float(loss), atol=1e-6)
    for k, g in _flat(grads).items():
        np.testing.assert_allclose(_flat(grads_r)[k], g, atol=1e-5, rtol=1e-4, err_msg=k)


def test_unknown_remat_policy_is_an_error():
    with pytest.raises(ValueError, match="model.remat"):
        _params(_tiny(remat="some"))


def test_aot_compile_reports_memory_and_flops(capsys):
    from mmjax.parallel.compile_report import aot_compile, memory_bytes, xla_flops

    f = jax.jit(lambda a, b: a @ b)
    x = np.ones((64, 64), np.float32)
    compiled = aot_compile(f, x, x, config=_tiny(), batch_size=16)
    np.testing.assert_allclose(compiled(x, x), x @ x)
    out = capsys.readouterr().out
    assert "compiled in" in out and "analytic" in out
    assert memory_bytes(compiled)["arguments"] == 2 * x.nbytes
    assert xla_flops(compiled) >= 2 * 64**3
