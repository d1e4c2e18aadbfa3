"""Fusion modules and the fused model: NumPy references, padding invariance, gradients.

The fused-model tests fill params from ``jax.eval_shape(init)`` with NumPy random values
(non-zero biases included) instead of running ``init``: on a CPU, initializing every
module eagerly costs seconds per model and is not what these tests are about.
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from mmjax.models.fused import KINDS, TOKEN_KINDS, FusedModel, build_fused_model
from mmjax.models.fusion import (
    CrossAttentionFusion,
    FeatureSequenceEncoder,
    GraphConv,
    GraphFusion,
    LateFusion,
    TensorFusion,
    normalized_adjacency,
)
from mmjax.parallel.sharding import DEFAULT_RULES

B = 2
S_TEXT = 8
TEXT_LENGTHS = (5, 7)
AUDIO_MASK = np.array([[1, 0, 1, 1, 0], [1, 1, 1, 1, 1]], bool)  # holes, not only right padding
AUDIO_DIM = 6
WIDTH = 16


def np_params(module: nn.Module, *args, seed: int = 0, **kwargs) -> dict:
    """``module``'s params from eval_shape, filled with seeded NumPy random values."""
    abstract = jax.eval_shape(module.init, jax.random.key(0), *args, **kwargs)
    rng = np.random.default_rng(seed)

    def fill(path, leaf):
        name = jax.tree_util.keystr(path)
        if leaf.ndim >= 2:
            fan_in = int(np.prod(leaf.shape[:-1]))
            value = rng.normal(size=leaf.shape) / np.sqrt(fan_in)
        elif "scale" in name:
            value = 1.0 + 0.1 * rng.normal(size=leaf.shape)
        else:
            value = 0.1 * rng.normal(size=leaf.shape)
        return jnp.asarray(value, leaf.dtype)

    return nn.unbox(jax.tree_util.tree_map_with_path(fill, abstract))


def model_config(kind: str, text_kind: str = "clip", **fusion) -> ml_collections.ConfigDict:
    text = dict(
        kind=text_kind,
        vocab_size=40,
        context_length=S_TEXT,
        eos_id=3,
        width=WIDTH,
        depth=1,
        num_heads=2,
        mlp_dim=32,
        act="gelu",
    )
    image = dict(
        image_size=16,
        patch_size=8,
        width=WIDTH,
        depth=1,
        num_heads=2,
        mlp_dim=32,
        pool="cls",
        act="gelu",
    )
    fusion_cfg = dict(
        kind=kind,
        width=WIDTH,
        depth=1,
        num_heads=2,
        mlp_dim=32,
        hidden=3,
        rank=2,
        graph_layers=2,
        adjacency="learned",
        clusters_per_modality=1,
    )
    fusion_cfg.update(fusion)
    return ml_collections.ConfigDict(
        dict(
            dtype="float32",
            image=image,
            text=text,
            # A narrower audio width: the cross-attention context needs a projection.
            features=dict(
                audio=dict(dim=AUDIO_DIM, max_len=8, width=8, depth=1, num_heads=2, mlp_dim=16)
            ),
            fusion=fusion_cfg,
        )
    )


def make_inputs(seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    tokens = np.zeros((B, S_TEXT), np.int32)
    mask = np.zeros((B, S_TEXT), bool)
    for i, n in enumerate(TEXT_LENGTHS):
        tokens[i, 0], tokens[i, n - 1] = 2, 3  # BOS, EOS
        tokens[i, 1 : n - 1] = rng.integers(4, 30, n - 2)
        mask[i, :n] = True
    return {
        "image": rng.normal(size=(B, 16, 16, 3)).astype(np.float32),
        "tokens": tokens,
        "padding_mask": mask,
        "features/audio": rng.normal(size=(B, 5, AUDIO_DIM)).astype(np.float32),
        "features/audio_mask": AUDIO_MASK.copy(),
    }


def variants(inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """4 copies along the batch: base, padding changed, a real text token changed, a real
    audio frame changed."""
    rng = np.random.default_rng(1)
    pad = {k: v.copy() for k, v in inputs.items()}
    free = ~pad["padding_mask"]
    pad["tokens"][free] = rng.integers(4, 30, free.sum())
    free = ~pad["features/audio_mask"]
    pad["features/audio"][free] = 1e3 * rng.normal(size=(free.sum(), AUDIO_DIM))
    pad["features/audio"][0, 1, 0] = np.nan  # padded: must not leak either
    text = {k: v.copy() for k, v in inputs.items()}
    text["tokens"][0, 1] = 4 if text["tokens"][0, 1] != 4 else 5
    audio = {k: v.copy() for k, v in inputs.items()}
    audio["features/audio"][0, 2] += 1.0
    return {k: np.concatenate([d[k] for d in (inputs, pad, text, audio)]) for k in inputs}


# ---------------------------------------------------------------- fused model, every kind

ENCODERS = ("image", "text", "features_audio")


@pytest.fixture(scope="module")
def shared():
    """Encoder params, the 4-variant inputs, their encoding, and a jitted VJP of ``encode``
    (shared by every kind: the per-kind tests compile only the fusion)."""
    model = build_fused_model(model_config("late_concat"))
    inputs = make_inputs()
    params = np_params(model, inputs)["params"]
    enc_params = {k: params[k] for k in ENCODERS}
    both = variants(inputs)

    def encode(p, x):
        return model.apply({"params": p}, x, method=FusedModel.encode)

    encoded = jax.jit(encode)(enc_params, both)

    @jax.jit
    def encode_vjp(p, x, cotangent):
        def floats(p):
            return {m: {k: e[k] for k in ("tokens", "pooled")} for m, e in encode(p, x).items()}

        return jax.vjp(floats, p)[1](cotangent)[0]

    return dict(
        inputs=inputs,
        variants=both,
        enc_params=enc_params,
        encoded=encoded,
        encode_vjp=encode_vjp,
    )


def split(encoded: dict) -> tuple[dict, dict]:
    floats = {m: {k: e[k] for k in ("tokens", "pooled")} for m, e in encoded.items()}
    return floats, {m: e["mask"] for m, e in encoded.items()}


def with_garbage_padding(floats: dict, masks: dict) -> dict:
    """Padded token positions of the encoded tokens set to large values and one NaN."""
    rng = np.random.default_rng(3)
    out = {}
    for m, e in floats.items():
        tokens = np.array(e["tokens"])
        pad = ~np.asarray(masks[m])
        tokens[pad] = 1e3 * rng.normal(size=(pad.sum(), tokens.shape[-1]))
        if pad.any():
            tokens[np.argwhere(pad)[0][0], np.argwhere(pad)[0][1], 0] = np.nan
        out[m] = {"tokens": tokens, "pooled": e["pooled"]}
    return out


def test_encode_zeroes_padding_and_ignores_it(shared):
    encoded = shared["encoded"]
    assert set(encoded) == {"text", "image", "audio"}
    assert encoded["image"]["tokens"].shape == (4 * B, 5, WIDTH)  # CLS + 4 patches
    assert encoded["image"]["mask"].all()
    assert encoded["text"]["tokens"].shape == (4 * B, S_TEXT, WIDTH)
    assert encoded["audio"]["pooled"].shape == (4 * B, 8)
    for m, e in encoded.items():
        tokens = np.asarray(e["tokens"])
        assert not tokens[~np.asarray(e["mask"])].any(), f"{m}: padded tokens are not zero"
        for key in ("tokens", "pooled"):
            base, pad = np.split(np.asarray(e[key]), 4)[:2]
            np.testing.assert_allclose(pad, base, atol=1e-6, err_msg=f"{m}/{key} sees padding")


@pytest.mark.parametrize("kind", KINDS)
def test_fused_model_every_kind(kind, shared):
    model = build_fused_model(model_config(kind))
    assert model.width == WIDTH
    inputs = shared["inputs"]
    boxed = jax.eval_shape(model.init, jax.random.key(0), inputs)["params"]
    assert set(ENCODERS) | {"fusion"} <= set(boxed)
    check_logical_names(boxed)
    params = np_params(model, inputs)["params"]
    params.update(shared["enc_params"])
    floats, masks = split(shared["encoded"])
    w = jnp.asarray(np.random.default_rng(2).normal(size=(B, WIDTH)), jnp.float32)

    @jax.jit
    def run(p, floats):
        def loss(p, floats):
            encoded = {m: {**floats[m], "mask": masks[m]} for m in floats}
            out, state = model.apply(
                {"params": p},
                encoded,
                method=FusedModel.fuse,
                capture_intermediates=lambda module, _: module.name == "fusion",
                mutable=["intermediates"],
            )
            fusion_out = state["intermediates"]["fusion"]["__call__"][0]
            return jnp.sum(out["pooled"][:B] * w), (out, fusion_out)

        return jax.grad(loss, argnums=(0, 1), has_aux=True)(p, floats)

    (grads, d_encoded), (out, fusion_out) = run(params, floats)
    assert out["pooled"].shape == (4 * B, WIDTH)
    if kind in TOKEN_KINDS:
        assert out["tokens"].shape == (4 * B, S_TEXT, WIDTH)
        np.testing.assert_array_equal(out["mask"][:B], inputs["padding_mask"])
        assert not np.asarray(out["tokens"])[~np.asarray(out["mask"])].any()
    if kind == "co_attention":
        assert out["context_tokens"].shape == (4 * B, 5 + 5, WIDTH)  # image + audio
    if kind == "gated":
        assert out["gate"].shape == (4 * B, 3, WIDTH)
    if kind == "graph":
        assert out["adjacency"].shape == (3 + 3, 3 + 3)  # 3 modality nodes + 1 cluster each

    # Padding: changed padded inputs (variant 1) and garbage at the encoded padded
    # positions (the fusion's own masking) leave every output unchanged.
    _, (garbage_out, _) = run(params, with_garbage_padding(floats, masks))
    for key, value in out.items():
        if key in ("mask", "context_mask", "adjacency"):
            continue
        base, pad = np.split(np.asarray(value), 4)[:2]
        assert np.all(np.isfinite(base)), key
        np.testing.assert_allclose(pad, base, atol=1e-6, err_msg=f"{kind}: {key} sees padding")
        np.testing.assert_allclose(
            garbage_out[key], value, atol=1e-6, err_msg=f"{kind}: {key} sees padded tokens"
        )
    # A changed real text token (variant 2) / audio frame (variant 3) changes row 0 only.
    pooled = np.split(np.asarray(out["pooled"]), 4)
    for changed, what in ((pooled[2], "text"), (pooled[3], "audio")):
        assert np.abs(changed[0] - pooled[0][0]).max() > 1e-4, f"{kind}: {what} change ignored"
        np.testing.assert_allclose(changed[1], pooled[0][1], atol=1e-6)

    # Gradients reach the fusion and, by the chain rule through encode, every encoder.
    enc_grads = shared["encode_vjp"](shared["enc_params"], shared["variants"], d_encoded)
    for sub, tree in [("fusion", grads["fusion"])] + [(m, enc_grads[m]) for m in ENCODERS]:
        norm = sum(float(jnp.sum(g**2)) for g in jax.tree.leaves(tree))
        assert norm > 0, f"{kind}: no gradient reaches {sub}"

    if kind == "early":  # the fused text tokens are the text slice right after CLS
        joint = fusion_out["tokens"]  # EarlyFusion's own output
        assert joint.shape == (4 * B, 1 + S_TEXT + 5 + 5, WIDTH)
        np.testing.assert_array_equal(out["tokens"], joint[:, 1 : 1 + S_TEXT])
        np.testing.assert_array_equal(fusion_out["mask"][:, 1 : 1 + S_TEXT], masks["text"])


def check_logical_names(boxed: dict) -> None:
    """Every param is boxed with one name per dim, every >= 2-D one has a sharded name,
    and the names resolve under the default rules."""
    leaves = jax.tree_util.tree_leaves_with_path(
        boxed, is_leaf=lambda v: isinstance(v, nn.LogicallyPartitioned)
    )
    for path, leaf in leaves:
        name = jax.tree_util.keystr(path)
        assert isinstance(leaf, nn.LogicallyPartitioned), f"{name} has no logical axis names"
        assert len(leaf.names) == len(leaf.value.shape), name
        # the learned [nodes, nodes] adjacency is tiny and replicated on purpose
        if len(leaf.value.shape) >= 2 and "adjacency_logits" not in name:
            assert any(a is not None for a in leaf.names), f"{name}: all axes unnamed"
    nn.logical_to_mesh(nn.get_partition_spec(boxed), DEFAULT_RULES)


def test_bert_text_call_equals_encode_then_fuse():
    """End to end (BERT text, co-attention): ``__call__`` on the 4 variants equals
    ``encode`` then ``fuse`` in separate applies, and padding does not leak."""
    model = build_fused_model(model_config("co_attention", text_kind="bert"))
    inputs = make_inputs()
    params = np_params(model, inputs)
    both = variants(inputs)

    @jax.jit
    def run(p, x):
        encoded = model.apply(p, x, method=FusedModel.encode)
        return model.apply(p, x), model.apply(p, encoded, method=FusedModel.fuse)

    out, fused = run(params, both)
    assert set(fused) == set(out)
    for key in out:
        np.testing.assert_allclose(fused[key], out[key], atol=1e-5, err_msg=key)
    for key in ("pooled", "tokens", "context_tokens"):
        base, pad = np.split(np.asarray(out[key]), 4)[:2]
        np.testing.assert_allclose(pad, base, atol=1e-6, err_msg=key)


def test_text_embedding_and_two_modalities():
    cfg = model_config("gated")
    cfg.features = {}
    model = build_fused_model(cfg)
    inputs = {k: v for k, v in make_inputs().items() if not k.startswith("features/")}
    out = jax.eval_shape(model.init_with_output, jax.random.key(0), inputs)[0]
    assert out["gate"].shape == (B, 2, WIDTH)
    params = np_params(model, inputs)
    table = model.apply(params, method=lambda m: m.text_embedding())
    np.testing.assert_array_equal(table, params["params"]["text"]["token_embed"]["embedding"])


def test_build_errors_name_the_config_key():
    with pytest.raises(ValueError, match="config.model.fusion.kind"):
        build_fused_model(model_config("nope"))
    cfg = model_config("cross_attention")
    cfg.text = None
    with pytest.raises(ValueError, match="config.model.text"):
        build_fused_model(cfg)
    cfg = model_config("late_concat")
    cfg.image, cfg.features = None, {}
    with pytest.raises(ValueError, match="at least two modalities"):
        build_fused_model(cfg)
    cfg = model_config("late_concat")
    del cfg.features.audio["max_len"]
    with pytest.raises(ValueError, match="config.model.features.audio: missing 'max_len'"):
        build_fused_model(cfg)
    model = build_fused_model(model_config("late_concat"))
    inputs = make_inputs()
    del inputs["features/audio_mask"]
    with pytest.raises(KeyError, match="features/audio_mask"):
        jax.eval_shape(model.init, jax.random.key(0), inputs)


# ---------------------------------------------------------------- modules vs NumPy


def _pooled(dims=(5, 4, 3), seed=0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.normal(size=(B, d)).astype(np.float32) for d in dims]


def _dense(p: dict, x: np.ndarray) -> np.ndarray:
    return x @ np.asarray(p["kernel"]) + np.asarray(p["bias"])


def _with_one(p: dict, x: np.ndarray) -> np.ndarray:
    return np.concatenate([_dense(p, x), np.ones((x.shape[0], 1))], axis=-1)


def test_tensor_fusion_matches_numpy_outer_product():
    xs = _pooled()
    module = TensorFusion(out_dim=7, hidden=2)
    params = np_params(module, xs)
    p = params["params"]
    z = [_with_one(p[f"proj_{i}"], x) for i, x in enumerate(xs)]
    t = np.einsum("bi,bj,bk->bijk", *z).reshape(B, -1)  # [batch, 3 * 3 * 3]
    ref = _dense(p["out"], t)
    np.testing.assert_allclose(module.apply(params, xs)["pooled"], ref, rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="tensor_lowrank"):
        jax.eval_shape(TensorFusion(out_dim=4, hidden=127).init, jax.random.key(0), xs)


def test_low_rank_fusion_matches_sum_of_products_and_cp_tensor():
    xs = _pooled()
    module = TensorFusion(out_dim=7, hidden=2, rank=3)
    params = np_params(module, xs)
    p = params["params"]
    z = [_with_one(p[f"proj_{i}"], x) for i, x in enumerate(xs)]
    w = [np.asarray(p[f"factor_{i}"]) for i in range(3)]  # [rank, hidden + 1, out]
    ref = np.asarray(p["bias"]) + sum(
        np.prod([z[i] @ w[i][r] for i in range(3)], axis=0) for r in range(3)
    )
    out = module.apply(params, xs)["pooled"]
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
    module = GraphFusion(WIDTH, num_layers=1, adjacency=adjacency)
    params = np_params(module, xs)
    out = module.apply(params, xs)
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
    module = LateFusion(WIDTH, mode="gated")
    params = np_params(module, xs)
    p = params["params"]
    out = module.apply(params, xs)
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
    module = LateFusion(WIDTH, mode="concat", hidden=10, act="relu")
    params = np_params(module, xs)
    p = params["params"]
    ref = _dense(p["out"], np.maximum(_dense(p["hidden"], np.concatenate(xs, -1)), 0))
    np.testing.assert_allclose(module.apply(params, xs)["pooled"], ref, rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="unknown mode"):
        jax.eval_shape(LateFusion(WIDTH, mode="sum").init, jax.random.key(0), xs)


# ---------------------------------------------------------------- token-level modules


@pytest.mark.parametrize("bidirectional", [False, True])
def test_cross_attention_projects_only_when_needed_and_ignores_padding(bidirectional):
    rng = np.random.default_rng(0)
    q = rng.normal(size=(B, 6, WIDTH)).astype(np.float32)
    c = rng.normal(size=(B, 4, 12)).astype(np.float32)
    qm = np.array([[1, 1, 1, 0, 0, 0], [1] * 6], bool)
    cm = np.array([[1, 1, 0, 1], [1, 1, 1, 0]], bool)
    module = CrossAttentionFusion(WIDTH, 2, 2, 32, bidirectional=bidirectional)
    params = np_params(module, q, qm, c, cm)
    assert "query_proj" not in params["params"] and "context_proj" in params["params"]
    apply = jax.jit(module.apply)
    out = apply(params, q, qm, c, cm)
    q2, c2 = q.copy(), c.copy()
    q2[~qm], c2[~cm] = 1e4, np.nan
    out2 = apply(params, q2, qm, c2, cm)
    for key in out:
        np.testing.assert_allclose(out2[key], out[key], atol=1e-6, err_msg=key)
    c3 = c.copy()
    c3[0, 3] += 1.0
    assert np.abs(apply(params, q, qm, c3, cm)["pooled"][0] - out["pooled"][0]).max() > 1e-4


def test_feature_sequence_encoder_masked_mean_and_errors():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(B, 5, AUDIO_DIM)).astype(np.float32)
    module = FeatureSequenceEncoder(8, depth=0, num_heads=2, mlp_dim=16, max_len=6)
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


def test_training_options_trace_with_dropout_remat_scan_and_bfloat16():
    """Training-mode options trace (``eval_shape``: no compile) for the kinds with their own
    transformer or attention (the vector kinds add no dropout or layers): dropout rngs,
    per-block remat, scanned layers, bf16 compute with fp32 params."""
    inputs = make_inputs()
    for kind in (*TOKEN_KINDS, "graph"):
        cfg = model_config(kind, dropout_rate=0.1)
        cfg.update(dict(remat="full", scan_layers=True, dtype="bfloat16"))
        cfg.features.audio.dropout_rate = 0.1
        model = build_fused_model(cfg)
        boxed = jax.eval_shape(model.init, jax.random.key(0), inputs)

        def loss(p, model=model):
            out = model.apply(p, inputs, deterministic=False, rngs={"dropout": jax.random.key(1)})
            return jnp.sum(out["pooled"].astype(jnp.float32)), out["pooled"]

        grads, pooled = jax.eval_shape(jax.grad(loss, has_aux=True), boxed)
        assert pooled.dtype == jnp.bfloat16 and pooled.shape == (B, WIDTH), kind
        assert {g.dtype for g in jax.tree.leaves(grads)} == {jnp.dtype(jnp.float32)}, kind
