"""Encoders and the two-tower model: shapes, pooling, normalization, config errors."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mmjax.models.text import BertEncoder, BertTextSpec, CLIPTextSpec, CLIPTextTransformer
from mmjax.models.towers import build_two_tower
from mmjax.models.vision import VisionTransformer, ViTSpec


@pytest.mark.parametrize("pool,seq", [("cls", 17), ("mean", 16), ("map", 16)])
def test_vit_pools(pool, seq):
    vit = VisionTransformer(
        ViTSpec(image_size=32, patch_size=8, width=24, depth=1, num_heads=2, mlp_dim=48, pool=pool)
    )
    x = jax.random.normal(jax.random.PRNGKey(0), (3, 32, 32, 3))
    params = vit.init(jax.random.PRNGKey(1), x)
    out = vit.apply(params, x)
    assert out["tokens"].shape == (3, seq, 24)
    assert out["pooled"].shape == (3, 24)


def test_vit_rejects_wrong_image_size():
    spec = ViTSpec(image_size=32, patch_size=8, width=8, depth=1, num_heads=2, mlp_dim=8)
    vit = VisionTransformer(spec)
    with pytest.raises(ValueError, match="model expects"):
        vit.init(jax.random.PRNGKey(0), jnp.zeros((1, 16, 16, 3)))


def _clip_text(**kw):
    spec = dict(vocab_size=20, context_length=8, width=16, depth=2, num_heads=2, mlp_dim=32)
    return CLIPTextTransformer(CLIPTextSpec(**spec, eos_id=3, **kw))


def test_clip_text_pools_at_end_of_text():
    model = _clip_text()
    tokens = jnp.array([[2, 5, 6, 3, 0, 0, 0, 0], [2, 7, 8, 9, 10, 3, 0, 0]])
    mask = tokens != 0
    params = model.init(jax.random.PRNGKey(0), tokens, mask)
    out = model.apply(params, tokens, mask)
    np.testing.assert_allclose(out["pooled"][0], out["tokens"][0, 3], atol=1e-6)
    np.testing.assert_allclose(out["pooled"][1], out["tokens"][1, 5], atol=1e-6)
    # Tokens after EOT cannot change the pooled output (causal attention).
    changed = tokens.at[0, 5].set(11)
    np.testing.assert_allclose(
        model.apply(params, changed, mask)["pooled"][0], out["pooled"][0], atol=1e-6
    )


def test_bert_encoder_ignores_padding():
    spec = BertTextSpec(vocab_size=20, context_length=8, width=16, depth=2, num_heads=2, mlp_dim=32)
    model = BertEncoder(spec)
    tokens = jnp.array([[2, 5, 6, 3, 0, 0, 0, 0]])
    mask = tokens != 0
    params = model.init(jax.random.PRNGKey(0), tokens, mask)
    out = model.apply(params, tokens, mask)
    assert out["tokens"].shape == (1, 8, 16) and out["pooled"].shape == (1, 16)
    other = model.apply(params, tokens.at[0, 6].set(9), mask)
    np.testing.assert_allclose(other["pooled"], out["pooled"], atol=1e-5)
    # Bidirectional: the first token sees later real tokens.
    assert not np.allclose(
        model.apply(params, tokens.at[0, 2].set(9), mask)["tokens"][0, 0], out["tokens"][0, 0]
    )


def test_two_tower_outputs(tiny_config):
    model = build_two_tower(tiny_config.model)
    images = jax.random.normal(jax.random.PRNGKey(0), (4, 32, 32, 3))
    tokens = jnp.tile(jnp.array([[2, 5, 6, 3] + [0] * 8]), (4, 1))
    params = model.init(jax.random.PRNGKey(1), images, tokens, tokens != 0)
    out = model.apply(params, images, tokens, tokens != 0)
    assert out["image"].shape == (4, 32) and out["text"].shape == (4, 32)
    np.testing.assert_allclose(np.linalg.norm(out["image"], axis=1), 1.0, rtol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(out["text"], axis=1), 1.0, rtol=1e-5)
    assert float(out["logit_bias"]) == 0.0
    img_only = model.apply(params, images, method="encode_image")  # projected, unnormalized
    np.testing.assert_allclose(
        img_only / np.linalg.norm(img_only, axis=1, keepdims=True), out["image"], atol=1e-6
    )
    assert set(params["params"]) == {"image", "text", "image_proj", "text_proj", "logit_scale"}


def test_siglip_tower_has_a_bias(tiny_config):
    tiny_config.model.logit_bias_init = -10.0
    model = build_two_tower(tiny_config.model)
    params = model.init(
        jax.random.PRNGKey(1), jnp.zeros((1, 32, 32, 3)), jnp.zeros((1, 12), jnp.int32)
    )
    assert float(params["params"]["logit_bias"].value) == -10.0


def test_bfloat16_compute(tiny_config):
    tiny_config.model.dtype = "bfloat16"
    model = build_two_tower(tiny_config.model)
    images = jnp.zeros((2, 32, 32, 3))
    tokens = jnp.zeros((2, 12), jnp.int32)
    params = model.init(jax.random.PRNGKey(1), images, tokens)
    assert all(p.dtype == jnp.float32 for p in jax.tree.leaves(params))
    out = model.apply(params, images, tokens)
    assert out["image"].dtype == jnp.float32  # normalized embeddings are fp32


def test_unknown_text_kind(tiny_config):
    tiny_config.model.text.kind = "gpt"
    with pytest.raises(ValueError, match="config.model.text.kind"):
        build_two_tower(tiny_config.model)


def test_config_sections_become_specs_or_name_the_bad_key(tiny_config):
    from mmjax.config import ConfigError
    from mmjax.models.spec import runtime_fields, spec_from_config

    image = tiny_config.model.image.to_dict()
    spec = spec_from_config(
        ViTSpec, image, "config.model.image", **runtime_fields(tiny_config.model)
    )
    assert spec.width == image["width"] and spec.posemb_interp == "none"  # the spec's default
    assert VisionTransformer(spec).width == image["width"]  # fields read through the module
    for change, message in [
        (dict(image, widht=8), r"config.model.image: unknown keys \['widht'\]"),
        ({k: v for k, v in image.items() if k != "depth"}, r"missing keys \['depth'\]"),
        (dict(image, pool="nope"), "config.model.image: pool: unknown 'nope'"),
        (dict(image, dtype="bfloat16"), "model-wide"),
    ]:
        with pytest.raises(ConfigError, match=message):
            spec_from_config(ViTSpec, change, "config.model.image", dtype=jnp.float32)
    tiny_config.model.text.kind = "gpt"
    with pytest.raises(ConfigError, match=r"known: \['bert', 'clip'\]"):
        build_two_tower(tiny_config.model)
