"""The fused model, every registered fusion kind: padding invariance, gradients through
the encoders, logical axis names, build errors (the modules alone against NumPy:
``test_fusion_modules.py``)."""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from mmjax.config import ConfigError
from mmjax.models.fused import FusedModel, build_fused_model
from mmjax.models.kinds import FUSIONS
from mmjax.parallel.sharding import DEFAULT_RULES
from tests.fusion_helpers import AUDIO_DIM, AUDIO_MASK, WIDTH, B, np_params

S_TEXT = 8
TEXT_LENGTHS = (5, 7)
KINDS = (
    "early",
    "cross_attention",
    "co_attention",
    "late_concat",
    "gated",
    "tensor",
    "tensor_lowrank",
    "graph",
)
TRANSFORMER = dict(depth=1, num_heads=2, mlp_dim=32)
# Each kind's own fields (a field another kind has is an unknown key for this one).
FUSION_FIELDS = {
    "early": TRANSFORMER,
    "cross_attention": TRANSFORMER,
    "co_attention": TRANSFORMER,
    "late_concat": dict(hidden=3),
    "gated": {},
    "tensor": dict(hidden=3),
    "tensor_lowrank": dict(hidden=3, rank=2),
    "graph": dict(graph_layers=2, adjacency="learned", clusters_per_modality=1),
}


def token_level(kind: str) -> bool:
    return FUSIONS.get(kind).Spec.token_level


def model_config(kind: str, text_kind: str = "clip", **fusion) -> ml_collections.ConfigDict:
    text = dict(kind=text_kind, vocab_size=40, context_length=S_TEXT, width=WIDTH, act="gelu")
    text.update(TRANSFORMER, **(dict(eos_id=3) if text_kind == "clip" else {}))
    image = dict(image_size=16, patch_size=8, width=WIDTH, pool="cls", act="gelu", **TRANSFORMER)
    fusion_cfg = dict(kind=kind, width=WIDTH, **{**FUSION_FIELDS.get(kind, {}), **fusion})
    # A narrower audio width: the cross-attention context needs a projection.
    audio = dict(dim=AUDIO_DIM, max_len=8, width=8, depth=1, num_heads=2, mlp_dim=16)
    return ml_collections.ConfigDict(
        dict(dtype="float32", image=image, text=text, features=dict(audio=audio), fusion=fusion_cfg)
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
    assert model.fusion.width == WIDTH
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
            out = model.apply({"params": p}, encoded, method=FusedModel.fuse)
            return jnp.sum(out["pooled"][:B] * w), out

        return jax.grad(loss, argnums=(0, 1), has_aux=True)(p, floats)

    (grads, d_encoded), out = run(params, floats)
    assert out["pooled"].shape == (4 * B, WIDTH)
    if token_level(kind):
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
    _, garbage_out = run(params, with_garbage_padding(floats, masks))
    for key, value in out.items():
        if key in ("mask", "context_mask", "joint_mask", "adjacency"):
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
        joint = out["joint_tokens"]
        assert joint.shape == (4 * B, 1 + S_TEXT + 5 + 5, WIDTH)
        np.testing.assert_array_equal(out["tokens"], joint[:, 1 : 1 + S_TEXT])
        np.testing.assert_array_equal(out["joint_mask"][:, 1 : 1 + S_TEXT], masks["text"])


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


def test_kinds_are_the_registered_ones():
    assert set(KINDS) <= set(FUSIONS.names())


def test_build_errors_name_the_config_key():
    with pytest.raises(
        ConfigError, match="config.model.fusion.kind: unknown fusion kind 'nope'; known: .*'early'"
    ):
        build_fused_model(model_config("nope"))
    with pytest.raises(ConfigError, match=r"config.model.fusion: unknown keys \['rank'\]"):
        build_fused_model(model_config("gated", rank=3))
    with pytest.raises(ConfigError, match="config.model.fusion: rank must be >= 1"):
        build_fused_model(model_config("tensor_lowrank", rank=0))
    with pytest.raises(ConfigError, match="config.model.image.kind: unknown image encoder kind"):
        cfg = model_config("gated")
        cfg.image.kind = "nope"
        build_fused_model(cfg)
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
    with pytest.raises(
        ValueError, match=r"config.model.features.audio: missing keys \['max_len'\]"
    ):
        build_fused_model(cfg)
    model = build_fused_model(model_config("late_concat"))
    inputs = make_inputs()
    del inputs["features/audio_mask"]
    with pytest.raises(KeyError, match="features/audio_mask"):
        jax.eval_shape(model.init, jax.random.key(0), inputs)


def test_training_options_trace_with_dropout_remat_scan_and_bfloat16():
    """Training-mode options trace (``eval_shape``: no compile) for the kinds with their own
    transformer or attention (the vector kinds add no dropout or layers): dropout rngs,
    per-block remat, scanned layers, bf16 compute with fp32 params."""
    inputs = make_inputs()
    for kind in (*(k for k in KINDS if token_level(k)), "graph"):
        cfg = model_config(kind, **(dict(dropout_rate=0.1) if token_level(kind) else {}))
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
