"""The transformer in models/layers.py: shapes, masks, numerics and logical axis names."""

from __future__ import annotations

import re

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mmjax.models.common import matmul_2d
from mmjax.models.layers import ACTIVATIONS, Encoder, MultiHeadAttention, TransformerBlock
from mmjax.models.spec import TransformerSpec

B, S, E, H = 2, 7, 16, 4


def _x(seed: int = 0, shape=(B, S, E)) -> jax.Array:
    return jax.random.normal(jax.random.PRNGKey(seed), shape)


def _attention_reference(params, x, causal=False, lengths=None):
    """Plain NumPy multi-head attention with the same params."""
    p = jax.tree.map(np.asarray, params)
    x = np.asarray(x, np.float64)
    q = np.einsum("bse,ehd->bshd", x, p["query"]["kernel"]) + p["query"]["bias"]
    k = np.einsum("bse,ehd->bshd", x, p["key"]["kernel"]) + p["key"]["bias"]
    v = np.einsum("bse,ehd->bshd", x, p["value"]["kernel"]) + p["value"]["bias"]
    logits = np.einsum("bqhd,bkhd->bhqk", q, k) / np.sqrt(q.shape[-1])
    allowed = np.ones(logits.shape, bool)
    if causal:
        allowed &= np.tril(np.ones((S, S), bool))[None, None]
    if lengths is not None:
        allowed &= (np.arange(S)[None, :] < np.asarray(lengths)[:, None])[:, None, None, :]
    logits = np.where(allowed, logits, -np.inf)
    w = np.exp(logits - logits.max(-1, keepdims=True))
    w /= w.sum(-1, keepdims=True)
    out = np.einsum("bhqk,bkhd->bqhd", w, v)
    return np.einsum("bshd,hde->bse", out, p["out"]["kernel"]) + p["out"]["bias"]


@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("with_padding", [False, True])
def test_attention_matches_numpy_reference(causal, with_padding):
    attn = MultiHeadAttention(num_heads=H)
    x = _x()
    params = nn.unbox(attn.init(jax.random.PRNGKey(1), x))["params"]
    lengths = jnp.array([S, 4]) if with_padding else None
    got = attn.apply({"params": params}, x, causal=causal, kv_lengths=lengths)
    want = _attention_reference(params, x, causal, lengths)
    assert got.shape == (B, S, E)
    np.testing.assert_allclose(np.asarray(got), want, rtol=1e-4, atol=1e-5)


def test_causal_mask_hides_the_future():
    enc = Encoder(TransformerSpec(depth=2, num_heads=H, mlp_dim=32))
    x = _x()
    params = enc.init(jax.random.PRNGKey(0), x)
    y = enc.apply(params, x, causal=True)
    x2 = x.at[:, 4:].set(_x(5)[:, 4:])  # change positions >= 4
    y2 = enc.apply(params, x2, causal=True)
    np.testing.assert_allclose(y[:, :4], y2[:, :4], atol=1e-5)
    assert not np.allclose(y[:, 4:], y2[:, 4:])
    # Without the causal mask the past does see the change.
    assert not np.allclose(enc.apply(params, x)[:, :4], enc.apply(params, x2)[:, :4])


def test_padding_mask_hides_padded_keys():
    enc = Encoder(TransformerSpec(depth=2, num_heads=H, mlp_dim=32, pre_norm=False))
    x = _x()
    lengths = jnp.array([S, 3])
    params = enc.init(jax.random.PRNGKey(0), x)
    y = enc.apply(params, x, kv_lengths=lengths)
    x2 = x.at[1, 3:].set(100.0)  # garbage in the padding of row 1
    y2 = enc.apply(params, x2, kv_lengths=lengths)
    np.testing.assert_allclose(y[1, :3], y2[1, :3], atol=1e-5)
    np.testing.assert_allclose(y[0], y2[0], atol=1e-6)


def test_boolean_mask_matches_lengths():
    attn = MultiHeadAttention(num_heads=H)
    x = _x()
    params = attn.init(jax.random.PRNGKey(1), x)
    lengths = jnp.array([5, 2])
    mask = (jnp.arange(S)[None, :] < lengths[:, None])[:, None, None, :]
    np.testing.assert_allclose(
        attn.apply(params, x, kv_lengths=lengths), attn.apply(params, x, mask=mask), atol=1e-5
    )


def test_cross_attention_shapes():
    attn = MultiHeadAttention(num_heads=H)
    q, kv = _x(0, (B, 3, E)), _x(1, (B, 9, E))
    params = attn.init(jax.random.PRNGKey(0), q, kv)
    assert attn.apply(params, q, kv).shape == (B, 3, E)


@pytest.mark.parametrize("pre_norm", [True, False])
def test_block_shapes_and_layouts_differ(pre_norm):
    x = _x()
    block = TransformerBlock(TransformerSpec(depth=1, num_heads=H, mlp_dim=32, pre_norm=pre_norm))
    params = block.init(jax.random.PRNGKey(0), x)
    y = block.apply(params, x)
    assert y.shape == (B, S, E) and y.dtype == jnp.float32
    other = TransformerBlock(
        TransformerSpec(depth=1, num_heads=H, mlp_dim=32, pre_norm=not pre_norm)
    )
    assert not np.allclose(y, other.apply(params, x))


def test_every_param_has_logical_axis_names():
    enc = Encoder(TransformerSpec(depth=2, num_heads=H, mlp_dim=32))
    boxed = enc.init(jax.random.PRNGKey(0), _x())["params"]
    leaves = jax.tree.leaves(boxed, is_leaf=lambda v: isinstance(v, nn.LogicallyPartitioned))
    assert leaves and all(isinstance(v, nn.LogicallyPartitioned) for v in leaves)
    for leaf in leaves:
        assert len(leaf.names) == leaf.value.ndim
    specs = jax.tree.leaves(nn.get_partition_spec(boxed))
    assert ("embed", "heads", "kv") in [tuple(s) for s in specs]
    assert ("embed", "mlp") in [tuple(s) for s in specs]


def test_bfloat16_compute_keeps_fp32_params():
    enc = Encoder(TransformerSpec(depth=1, num_heads=H, mlp_dim=32, dtype=jnp.bfloat16))
    params = nn.unbox(enc.init(jax.random.PRNGKey(0), _x()))
    assert {p.dtype for p in jax.tree.leaves(params)} == {jnp.dtype(jnp.float32)}
    y = enc.apply(params, _x())
    assert y.dtype == jnp.bfloat16
    y32 = Encoder(TransformerSpec(depth=1, num_heads=H, mlp_dim=32)).apply(params, _x())
    np.testing.assert_allclose(np.asarray(y, np.float32), y32, atol=0.1)


def test_quick_gelu_and_unknown_activation():
    x = jnp.linspace(-3, 3, 7)
    np.testing.assert_allclose(
        ACTIVATIONS["quick_gelu"](x), x / (1 + np.exp(-1.702 * x)), rtol=1e-5
    )
    block = TransformerBlock(TransformerSpec(depth=1, num_heads=H, mlp_dim=32, act="nope"))
    with pytest.raises(ValueError, match="unknown activation 'nope'"):
        block.init(jax.random.PRNGKey(0), _x())


def test_dropout_is_active_only_in_training():
    enc = Encoder(TransformerSpec(depth=1, num_heads=H, mlp_dim=32, dropout_rate=0.5))
    x = _x()
    params = enc.init(jax.random.PRNGKey(0), x)
    a = enc.apply(params, x, deterministic=False, rngs={"dropout": jax.random.PRNGKey(1)})
    b = enc.apply(params, x, deterministic=False, rngs={"dropout": jax.random.PRNGKey(2)})
    assert not np.allclose(a, b)
    np.testing.assert_allclose(enc.apply(params, x), enc.apply(params, x))


@pytest.mark.parametrize(
    "equation, x_shape, w_shape, contract",
    [
        ("bse,ef->bsf", (3, 5, 8), (8, 6), 1),  # nn.Dense via common.dense
        ("bse,ehd->bshd", (3, 5, 8), (8, 2, 4), 1),  # attention q / k / v
        ("bshd,hde->bse", (3, 5, 2, 4), (2, 4, 8), 2),  # attention out
    ],
)
def test_matmul_2d_equals_einsum_and_its_gradients(equation, x_shape, w_shape, contract):
    """The projections' one 2-D matmul: the einsum's values and gradients, and no dot of the
    differentiated program contracts more than one dim (XLA:CPU copies operands for those)."""
    kx, kw, kc = jax.random.split(jax.random.PRNGKey(0), 3)
    x, w = jax.random.normal(kx, x_shape), jax.random.normal(kw, w_shape)
    c = jax.random.normal(kc, jnp.einsum(equation, x, w).shape)

    def grads(f):
        return jax.jit(jax.grad(lambda x, w: jnp.sum(jnp.tanh(f(x, w)) * c), argnums=(0, 1)))

    ours = grads(lambda x, w: matmul_2d(x, w, contract))
    want = jnp.einsum(equation, x, w)
    np.testing.assert_allclose(matmul_2d(x, w, contract), want, rtol=1e-5, atol=1e-5)
    ref = grads(lambda x, w: jnp.einsum(equation, x, w))(x, w)
    for got, expected in zip(ours(x, w), ref, strict=True):
        np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)
    assert not re.search(r"contracting_dims = \[\d+, \d+", ours.lower(x, w).as_text())
    with pytest.raises(ValueError, match="input dims"):
        matmul_2d(x, jnp.zeros((7, 3)))
