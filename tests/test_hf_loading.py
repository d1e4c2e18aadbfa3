"""Loader behaviour: key reports, refused pickles, dont_load, resampled positions, shards,
base-model prefixes, Hub-cache ids."""

from __future__ import annotations

import json
import shutil

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from safetensors.numpy import load_file, save_file

import mmjax.hf
from mmjax.hf.formats import WeightFileError
from mmjax.hf.transforms import resample_posemb
from tests.hf_reference import FIXTURES, images, require_transformers, text_batch


def copy_fixture(name: str, tmp_path):
    return shutil.copytree(FIXTURES / name, tmp_path / name)


def leaves_equal(a, b) -> None:
    import jax

    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


def test_pickle_checkpoints_are_refused(tmp_path):
    d = tmp_path / "m"
    d.mkdir()
    shutil.copy(FIXTURES / "bert-pt" / "config.json", d)
    (d / "pytorch_model.bin").write_bytes(b"not unpickled")
    with pytest.raises(WeightFileError, match="(?i)pytorch_model.bin.*convert it to safetensors"):
        mmjax.hf.load(d)


def test_report_names_missing_unexpected_and_misshaped_keys(tmp_path):
    d = copy_fixture("bert-pt", tmp_path)
    t = load_file(d / "model.safetensors")
    del t["encoder.layer.1.output.dense.bias"]
    t["encoder.layer.0.extra.weight"] = np.zeros(3, np.float32)
    t["pooler.dense.weight"] = np.zeros((16, 8), np.float32)
    save_file(t, d / "model.safetensors")
    with pytest.raises(mmjax.hf.HFLoadError) as err:
        mmjax.hf.load(d)
    msg = str(err.value)
    assert "params/text/encoder/layer_1/mlp/wo/bias" in msg  # missing
    assert "encoder.layer.0.extra.weight" in msg  # unexpected
    assert "pooler.dense.weight (16, 8) -> params/text/pooler/kernel expects (16, 16)" in msg
    assert str(d / "model.safetensors") in msg


def test_dont_load_reinitializes_a_resized_head():
    with pytest.raises(mmjax.hf.HFLoadError, match=r"classifier\.weight \(3, 16\)"):
        mmjax.hf.load(FIXTURES / "vit-cls-pt", overrides={"num_labels": 5})
    module, variables = mmjax.hf.load(
        FIXTURES / "vit-cls-pt", overrides={"num_labels": 5}, dont_load=["head/.*"]
    )
    _, original = mmjax.hf.load(FIXTURES / "vit-cls-pt")
    assert variables["params"]["head"]["dense"]["kernel"].shape == (16, 5)
    leaves_equal(variables["params"]["image"], original["params"]["image"])
    assert module.apply(variables, jnp.asarray(images()))["logits"].shape == (2, 5)


@pytest.mark.parametrize("name,cfg", [("clip-pt", "vision_config"), ("siglip-pt", "vision_config")])
def test_positions_are_resampled_for_a_new_image_size(name, cfg):
    module, variables = mmjax.hf.load(FIXTURES / name, overrides={cfg: {"image_size": 32}})
    pos = variables["params"]["image"]["pos_embed"]
    assert pos.shape == ((1 if name == "clip-pt" else 0) + 16, 16)
    emb = module.apply(variables, jnp.asarray(images(size=32)), method="encode_image")
    assert np.all(np.isfinite(emb))


def test_resample_keeps_class_token_and_same_size_grid():
    pe = np.random.default_rng(0).normal(size=(1 + 9, 4)).astype(np.float32)
    np.testing.assert_allclose(resample_posemb(pe, 1, (10, 4)), pe, atol=1e-6)
    out = resample_posemb(pe, 1, (1 + 36, 4))
    np.testing.assert_array_equal(out[0], pe[0])
    with pytest.raises(ValueError, match="cannot resample"):
        resample_posemb(pe, 1, (1 + 7, 4))


def test_sharded_checkpoints_load(tmp_path):
    transformers = require_transformers()
    _, expected = mmjax.hf.load(FIXTURES / "bert-mlm-pt")
    pt = transformers.BertForMaskedLM.from_pretrained(FIXTURES / "bert-mlm-pt")
    pt.save_pretrained(tmp_path / "pt", max_shard_size="10KB")
    assert (tmp_path / "pt" / "model.safetensors.index.json").is_file()
    leaves_equal(mmjax.hf.load(tmp_path / "pt")[1], expected)
    fx = transformers.FlaxBertForMaskedLM.from_pretrained(FIXTURES / "bert-mlm-flax")
    fx.save_pretrained(tmp_path / "flax", max_shard_size="10KB")
    assert (tmp_path / "flax" / "flax_model.msgpack.index.json").is_file()
    leaves_equal(mmjax.hf.load(tmp_path / "flax")[1], mmjax.hf.load(FIXTURES / "bert-mlm-flax")[1])


def test_base_model_prefix_is_optional(tmp_path):
    d = copy_fixture("bert-pt", tmp_path)
    t = load_file(d / "model.safetensors")
    save_file({f"bert.{k}": v for k, v in t.items()}, d / "model.safetensors")
    leaves_equal(mmjax.hf.load(d)[1], mmjax.hf.load(FIXTURES / "bert-pt")[1])


def test_hub_id_resolves_from_the_local_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path))
    repo = tmp_path / "models--tiny--bert"
    shutil.copytree(FIXTURES / "bert-pt", repo / "snapshots" / "abc123")
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("abc123")
    module, _ = mmjax.hf.load("tiny/bert")
    assert module.text.width == 16
    with pytest.raises(FileNotFoundError, match="allow_network=True"):
        mmjax.hf.load("tiny/absent")


def test_unknown_architecture_is_named(tmp_path):
    d = copy_fixture("bert-pt", tmp_path)
    cfg = json.loads((d / "config.json").read_text())
    cfg.update(architectures=["GPT2Model"], model_type="gpt2")
    (d / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(ValueError, match="GPT2Model"):
        mmjax.hf.load(d)


def test_clip_model_config_matches_two_tower_layout():
    """init_from takes subtrees: the loaded CLIP has mmjax's own TwoTower layout."""
    from mmjax.models.towers import build_two_tower

    model, variables = mmjax.hf.load(FIXTURES / "clip-pt")
    cfg = mmjax.hf.model_config(mmjax.hf.read_config(FIXTURES / "clip-pt"))
    assert build_two_tower(cfg) == model
    assert set(variables["params"]) == {"image", "text", "image_proj", "text_proj", "logit_scale"}
    ids, mask = text_batch(eos=63)
    out = model.apply(variables, jnp.asarray(images()), jnp.asarray(ids), jnp.asarray(mask, bool))
    np.testing.assert_allclose(np.linalg.norm(out["image"], axis=-1), 1.0, atol=1e-5)


def test_loaded_resnet_is_an_image_tower():
    """A TwoTower with a ResNet image encoder runs on the loaded weights and batch stats."""
    import flax.linen as nn

    from mmjax.models.text import CLIPTextSpec, CLIPTextTransformer
    from mmjax.models.towers import TwoTower, TwoTowerSpec

    resnet, variables = mmjax.hf.load(FIXTURES / "resnet-pt")
    text = CLIPTextTransformer(
        CLIPTextSpec(
            vocab_size=64, context_length=8, width=16, depth=1, num_heads=2, mlp_dim=32, eos_id=63
        )
    )
    model = TwoTower(TwoTowerSpec(embed_dim=8), image=resnet.image, text=text)
    x, ids = jnp.asarray(images(size=32)), jnp.ones((2, 8), jnp.int32)
    shapes = nn.unbox(jax.eval_shape(model.init, jax.random.PRNGKey(0), x, ids))["params"]
    params = jax.tree.map(lambda s: jnp.full(s.shape, 0.1, s.dtype), shapes)
    params["image"] = variables["params"]["image"]
    tower = {"params": params, "batch_stats": {"image": variables["batch_stats"]["image"]}}
    both = jax.jit(
        lambda v, x: model.apply(v, x, method=lambda m, x: (m.encode_image(x), m.image(x)))
    )
    proj, image_out = both(tower, x)
    pooled = image_out["pooled"]
    np.testing.assert_allclose(proj, pooled @ params["image_proj"]["kernel"], atol=1e-5)


def test_dtype_sets_params_and_compute():
    module, variables = mmjax.hf.load(FIXTURES / "clip-pt", dtype=jnp.bfloat16)
    assert {x.dtype for x in jax.tree.leaves(variables)} == {jnp.dtype(jnp.bfloat16)}
    emb = module.apply(variables, jnp.asarray(images()), method="encode_image")
    assert emb.dtype == jnp.bfloat16
    fp32_module, fp32 = mmjax.hf.load(FIXTURES / "clip-pt")
    ref = fp32_module.apply(fp32, jnp.asarray(images()), method="encode_image")
    np.testing.assert_allclose(np.asarray(emb, np.float32), ref, atol=0.1)


def test_save_names_what_transformers_cannot_express(tmp_path, tiny_config):
    from mmjax.models.towers import build_two_tower

    model = build_two_tower(tiny_config.model)  # sincos2d positions: not a CLIP layout
    with pytest.raises(ValueError, match=r"image.posemb='learn'"):
        mmjax.hf.save(tmp_path, model, {"params": {}})


@pytest.mark.parametrize("key", ["patch_size", "hidden_size"])
def test_a_zero_size_in_an_hf_config_names_the_key(tmp_path, key):
    from mmjax.hf.config_map import ConfigMapError

    d = copy_fixture("clip-pt", tmp_path)
    cfg = json.loads((d / "config.json").read_text())
    cfg["vision_config"][key] = 0
    (d / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(ConfigMapError, match=f"vision_config.{key} = 0: must be a positive"):
        mmjax.hf.load(d)
