"""Fusion modules against NumPy references: tensor / low-rank / graph / gated / concat
fusion, cross- and co-attention padding invariance, the feature-sequence encoder.
Every module is called as ``fuse(modalities: dict[str, Tokens])``."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mmjax.models.fusion import (
    CoAttentionFusion,
    CrossAttentionFusion,
    GatedFusion,
    GraphFusion,
    LateFusion,
    LowRankTensorFusion,
    TensorFusion,
    normalized_adjacency,
)
from mmjax.models.fusion.cross import CoAttentionSpec, CrossAttentionSpec
from mmjax.models.fusion.graph import GraphConv, GraphSpec
from mmjax.models.fusion.late import GatedSpec, LateSpec
from mmjax.models.fusion.tensor import LowRankSpec, TensorSpec
from mmjax.models.sequence import FeatureSequenceEncoder, SequenceSpec
from tests.fusion_helpers import AUDIO_DIM, AUDIO_MASK, WIDTH, B, np_params


def _pooled(dims=(5, 4, 3), seed=0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.normal(size=(B, d)).astype(np.float32) for d in dims]


def _mods(xs: list[np.ndarray]) -> dict[str, dict[str, np.ndarray]]:
    """Pooled vectors as the ``modalities`` a fusion module takes (order kept)."""
    return {f"m{i}": {"pooled": x} for i, x in enumerate(xs)}


def _dense(p: dict, x: np.ndarray) -> np.ndarray:
    return x @ np.asarray(p["kernel"]) + np.asarray(p["bias"])


def _with_one(p: dict, x: np.ndarray) -> np.ndarray:
    return np.concatenate([_dense(p, x), np.ones((x.shape[0], 1))], axis=-1)


def test_tensor_fusion_matches_numpy_outer_product():
    xs = _pooled()
    module = TensorFusion(TensorSpec(width=7, hidden=2))
    params = np_params(module, _mods(xs))
    p = params["params"]
    z = [_with_one(p[f"proj_{i}"], x) for i, x in enumerate(xs)]
    t = np.einsum("bi,bj,bk->bijk", *z).reshape(B, -1)  # [batch, 3 * 3 * 3]
    ref = _dense(p["out"], t)
    out = module.apply(params, _mods(xs))["pooled"]
    np.testing.assert_allclose(out, ref, rtol=1e-5, atol=1e-5)
    big = TensorFusion(TensorSpec(width=4, hidden=127))
    with pytest.raises(ValueError, match="tensor_lowrank"):
        jax.eval_shape(big.init, jax.random.key(0), _mods(xs))


def test_low_rank_fusion_matches_sum_of_products_and_cp_tensor():
    xs = _pooled()
    module = LowRankTensorFusion(LowRankSpec(width=7, hidden=2, rank=3))
    params = np_params(module, _mods(xs))
    p = params["params"]
    z = [_with_one(p[f"proj_{i}"], x) for i, x in enumerate(xs)]
    w = [np.asarray(p[f"factor_{i}"]) for i in range(3)]  # [rank, hidden + 1, out]
    ref = np.asarray(p["bias"]) + sum(
        np.prod([z[i] @ w[i][r] for i in range(3)], axis=0) for r in range(3)
    )
    out = module.apply(params, _mods(xs))["pooled"]
    np.testing.assert_allclose(out, ref, rtol=1e-5, atol=1e-5)
    # the same map as the full tensor fusion with a CP-rank-3 weight
    full = np.einsum("rio,rjo,rko->ijko", *w)
    ref_full = np.einsum("bi,bj,bk,ijko->bo", *z, full) + np.asarray(p["bias"])
    np.testing.assert_allclose(out, ref_full, rtol=1e-5, atol=1e-5)


def test_gcn_layer_matches_numpy_with_symmetric_normalization():
    rng = np.random.default_rng(0)
    a = (rng.random((5, 5)) > 0.5).astype(np.float32)
    a = np.triu(a, 1) + np.triu(a, 1).T
    a_tilde = a + np.eye(5)
    d = a_tilde.sum(1) ** -0.5
    a_hat = d[:, None] * a_tilde * d[None, :]
    np.testing.assert_allclose(normalized_adjacency(jnp.asarray(a)), a_hat, rtol=1e-6)
    h = rng.normal(size=(B, 5, 4)).astype(np.float32)
    layer = GraphConv(6, act="relu")
    params = np_params(layer, h, a_hat)
    ref = np.maximum(np.einsum("mn,bnd,df->bmf", a_hat, h, params["params"]["kernel"]), 0)
    np.testing.assert_allclose(layer.apply(params, h, a_hat), ref, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("adjacency", ["fixed", "learned"])
def test_graph_fusion_adjacency(adjacency):
    xs = _pooled()
    module = GraphFusion(GraphSpec(width=WIDTH, graph_layers=1, adjacency=adjacency))
    params = np_params(module, _mods(xs))
    out = module.apply(params, _mods(xs))
    assert out["pooled"].shape == (B, WIDTH)
    adj = np.asarray(out["adjacency"])
    if adjacency == "fixed":  # complete graph: D^-1/2 (A + I) D^-1/2 = 1 / n everywhere
        np.testing.assert_allclose(adj, np.full((3, 3), 1 / 3), rtol=1e-6)
    else:
        logits = np.asarray(params["params"]["adjacency_logits"])
        ref = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
        np.testing.assert_allclose(adj, ref, rtol=1e-5)
    np.testing.assert_allclose(adj.sum(1), 1.0, rtol=1e-6)


def test_gmu_gate_and_gated_sum_match_numpy():
    xs = _pooled(dims=(5, 4))
    module = GatedFusion(GatedSpec(width=WIDTH))
    params = np_params(module, _mods(xs))
    p = params["params"]
    out = module.apply(params, _mods(xs))
    gate = np.asarray(out["gate"])
    assert gate.shape == (B, 2, WIDTH) and gate.min() >= 0 and gate.max() <= 1
    h = np.stack([np.tanh(_dense(p[f"proj_{i}"], x)) for i, x in enumerate(xs)], axis=1)
    logits = _dense(p["gate"], np.concatenate(xs, -1)).reshape(B, 2, WIDTH)
    # two modalities: softmax over modalities == the GMU's sigmoid gate
    z = 1 / (1 + np.exp(-(logits[:, 0] - logits[:, 1])))
    np.testing.assert_allclose(gate[:, 0], z, rtol=1e-5, atol=1e-6)
    ref = z * h[:, 0] + (1 - z) * h[:, 1]
    np.testing.assert_allclose(out["pooled"], ref, rtol=1e-5, atol=1e-6)


def test_late_concat_matches_numpy():
    xs = _pooled()
    module = LateFusion(LateSpec(width=WIDTH, hidden=10, act="relu"))
    params = np_params(module, _mods(xs))
    p = params["params"]
    ref = _dense(p["out"], np.maximum(_dense(p["hidden"], np.concatenate(xs, -1)), 0))
    out = module.apply(params, _mods(xs))["pooled"]
    np.testing.assert_allclose(out, ref, rtol=1e-5, atol=1e-5)


# ---------------------------------------------------------------- token-level modules


@pytest.mark.parametrize(
    "module",
    [
        CrossAttentionFusion(CrossAttentionSpec(width=WIDTH, depth=2, num_heads=2, mlp_dim=32)),
        CoAttentionFusion(CoAttentionSpec(width=WIDTH, depth=2, num_heads=2, mlp_dim=32)),
    ],
)
def test_cross_attention_projects_only_when_needed_and_ignores_padding(module):
    rng = np.random.default_rng(0)
    q = rng.normal(size=(B, 6, WIDTH)).astype(np.float32)
    c = rng.normal(size=(B, 4, 12)).astype(np.float32)
    qm = np.array([[1, 1, 1, 0, 0, 0], [1] * 6], bool)
    cm = np.array([[1, 1, 0, 1], [1, 1, 1, 0]], bool)

    def mods(q, c):
        return {"text": {"tokens": q, "mask": qm}, "image": {"tokens": c, "mask": cm}}

    params = np_params(module, mods(q, c))
    assert "query_proj" not in params["params"] and "context_proj" in params["params"]
    apply = jax.jit(module.apply)
    out = apply(params, mods(q, c))
    q2, c2 = q.copy(), c.copy()
    q2[~qm], c2[~cm] = 1e4, np.nan
    out2 = apply(params, mods(q2, c2))
    for key in out:
        np.testing.assert_allclose(out2[key], out[key], atol=1e-6, err_msg=key)
    c3 = c.copy()
    c3[0, 3] += 1.0
    assert np.abs(apply(params, mods(q, c3))["pooled"][0] - out["pooled"][0]).max() > 1e-4


def test_feature_sequence_encoder_masked_mean_and_errors():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(B, 5, AUDIO_DIM)).astype(np.float32)
    spec = SequenceSpec(dim=AUDIO_DIM, width=8, depth=0, num_heads=2, mlp_dim=16, max_len=6)
    module = FeatureSequenceEncoder(spec)
    params = np_params(module, x, AUDIO_MASK)
    out = module.apply(params, x, AUDIO_MASK)
    tokens = np.asarray(out["tokens"])
    assert not tokens[~AUDIO_MASK].any()
    ref = tokens.sum(1) / AUDIO_MASK.sum(1, keepdims=True)
    np.testing.assert_allclose(out["pooled"], ref, rtol=1e-6)
    with pytest.raises(ValueError, match="max_len"):
        module.apply(params, np.zeros((B, 7, AUDIO_DIM)), np.ones((B, 7), bool))
    with pytest.raises(ValueError, match="must be bool"):
        module.apply(params, x, AUDIO_MASK.astype(np.int32))
