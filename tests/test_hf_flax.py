"""Real ``flax_model.msgpack`` files written by transformers' Flax classes load and match."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import pytest

import mmjax.hf
from tests.hf_reference import FIXTURES, images, max_diff, require_transformers, text_batch

TOL = 1e-5


def flax_model(cls_name: str, name: str):
    """``(model, params)``; ``_do_init=False`` skips transformers' own random init (slow)."""
    transformers = require_transformers()
    return getattr(transformers, cls_name).from_pretrained(FIXTURES / name, _do_init=False)


def test_clip_msgpack():
    ref, params = flax_model("FlaxCLIPModel", "clip-flax")
    module, variables = mmjax.hf.load(FIXTURES / "clip-flax")
    px = images()
    ids, mask = text_batch(eos=63)
    img = module.apply(variables, jnp.asarray(px), method="encode_image")
    txt = module.apply(variables, jnp.asarray(ids), jnp.asarray(mask, bool), method="encode_text")
    ref_img = ref.get_image_features(np.transpose(px, (0, 3, 1, 2)), params=params)
    ref_txt = ref.get_text_features(ids, mask, params=params)
    assert max_diff(ref_img, img) <= TOL
    assert max_diff(ref_txt, txt) <= TOL
    assert float(variables["params"]["logit_scale"]) == pytest.approx(2.0)


def test_vit_classifier_msgpack():
    ref, params = flax_model("FlaxViTForImageClassification", "vit-cls-flax")
    module, variables = mmjax.hf.load(FIXTURES / "vit-cls-flax")
    px = images()
    out = module.apply(variables, jnp.asarray(px))
    assert max_diff(ref(np.transpose(px, (0, 3, 1, 2)), params=params).logits, out["logits"]) <= TOL


def test_bert_mlm_msgpack():
    ref, params = flax_model("FlaxBertForMaskedLM", "bert-mlm-flax")
    module, variables = mmjax.hf.load(FIXTURES / "bert-mlm-flax")
    ids, mask = text_batch()
    out = module.apply(variables, jnp.asarray(ids), jnp.asarray(mask))
    r = ref(ids, mask, np.zeros_like(ids), params=params)
    real = mask.astype(bool)  # Flax BERT masks keys only, like mmjax: compare real tokens
    assert max_diff(np.asarray(r.logits)[real], np.asarray(out["logits"])[real]) <= TOL
