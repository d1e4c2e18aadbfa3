"""Contrastive losses against plain NumPy, and on a sharded global batch."""

from __future__ import annotations

import numpy as np
import pytest

from mmjax.losses import sigmoid_contrastive_loss, softmax_contrastive_loss
from tests.conftest import run_python


def _embeddings(n=8, d=5, seed=0):
    rng = np.random.default_rng(seed)
    a, b = rng.normal(size=(n, d)), rng.normal(size=(n, d))
    return (
        a / np.linalg.norm(a, axis=1, keepdims=True),
        b / np.linalg.norm(b, axis=1, keepdims=True),
    )


def _log_softmax(x, axis):
    m = x.max(axis=axis, keepdims=True)
    return x - m - np.log(np.exp(x - m).sum(axis=axis, keepdims=True))


def softmax_reference(img, txt, log_scale):
    logits = np.exp(log_scale) * img @ txt.T  # unclamped: the cap is on the param
    n = len(img)
    i2t = -_log_softmax(logits, 1)[np.arange(n), np.arange(n)].mean()
    t2i = -_log_softmax(logits, 0)[np.arange(n), np.arange(n)].mean()
    return (i2t + t2i) / 2


def sigmoid_reference(img, txt, log_scale, bias):
    logits = np.exp(log_scale) * img @ txt.T + bias
    z = 2 * np.eye(len(img)) - 1
    return np.sum(np.log1p(np.exp(-z * logits))) / len(img)


@pytest.mark.parametrize("log_scale", [0.0, 2.3, 6.0])  # 6.0: above the cap, unclamped
def test_softmax_loss_matches_numpy(log_scale):
    img, txt = _embeddings()
    loss, metrics = softmax_contrastive_loss(img, txt, np.float32(log_scale))
    np.testing.assert_allclose(float(loss), softmax_reference(img, txt, log_scale), rtol=1e-5)
    assert 0.0 <= float(metrics["train_i2t_acc"]) <= 1.0


@pytest.mark.parametrize("log_scale,bias", [(np.log(10.0), -10.0), (1.0, 0.5)])
def test_sigmoid_loss_matches_numpy(log_scale, bias):
    img, txt = _embeddings(seed=1)
    loss, _ = sigmoid_contrastive_loss(img, txt, np.float32(log_scale), np.float32(bias))
    np.testing.assert_allclose(float(loss), sigmoid_reference(img, txt, log_scale, bias), rtol=1e-5)


def test_losses_reward_matching_pairs():
    img, txt = _embeddings(seed=2)
    good, _ = softmax_contrastive_loss(img, img, np.float32(3.0))
    bad, _ = softmax_contrastive_loss(img, txt, np.float32(3.0))
    assert float(good) < float(bad)


def test_losses_see_the_global_batch_when_sharded():
    """On 8 devices with the batch split over `data`, the loss equals the 1-device loss."""
    out = run_python(
        """
import jax, numpy as np
from jax.sharding import NamedSharding, PartitionSpec as P
from mmjax.losses import softmax_contrastive_loss, sigmoid_contrastive_loss
from mmjax.parallel.sharding import make_mesh
mesh = make_mesh({'data': -1, 'fsdp': 1, 'tensor': 1})
assert mesh.shape['data'] == 8
rng = np.random.default_rng(0)
img = rng.normal(size=(32, 6)).astype(np.float32); img /= np.linalg.norm(img, axis=1, keepdims=True)
txt = rng.normal(size=(32, 6)).astype(np.float32); txt /= np.linalg.norm(txt, axis=1, keepdims=True)
sh = NamedSharding(mesh, P('data'))
gi, gt = jax.device_put(img, sh), jax.device_put(txt, sh)
assert len(gi.addressable_shards) == 8
s = np.float32(2.0); b = np.float32(-3.0)
f1 = jax.jit(lambda a, c: softmax_contrastive_loss(a, c, s)[0])
f2 = jax.jit(lambda a, c: sigmoid_contrastive_loss(a, c, s, b)[0])
print(float(f1(gi, gt)), float(f1(img, txt)), float(f2(gi, gt)), float(f2(img, txt)))
""",
        devices=8,
    )
    sharded_soft, local_soft, sharded_sig, local_sig = map(float, out.split())
    np.testing.assert_allclose(sharded_soft, local_soft, rtol=1e-5)
    np.testing.assert_allclose(sharded_sig, local_sig, rtol=1e-5)
