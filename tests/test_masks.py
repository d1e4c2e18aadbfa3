"""Padding masks of any pattern (left padding, holes) against transformers; MLM never masks
the tokenizer's special tokens; ITM hard negatives never another caption of the same image."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import mmjax.hf
from mmjax import config as config_lib
from mmjax.data.mlm_masking import mask_tokens, masking_ids
from mmjax.data.tokenizer import TextTokenizer
from mmjax.data.transforms import normalize_images
from mmjax.models.itm_mlm import ITMMLMModel
from mmjax.models.layers import key_padding
from mmjax.tasks.itm_mlm import ITMMLMTask
from tests.conftest import REPO
from tests.hf_reference import FIXTURES, max_diff, to_torch, torch_model

TOL = 1e-5


def _masks(seq: int = 10) -> np.ndarray:
    """``[4, seq]`` int32 attention masks: full, right-padded, left-padded, holed."""
    m = np.ones((4, seq), np.int32)
    m[1, 6:] = 0  # right padding
    m[2, :4] = 0  # left padding (an HF tokenizer with padding_side='left')
    m[3, [2, 5, 7]] = 0  # holes
    return m


def test_key_padding_uses_lengths_only_for_right_padding():
    m = _masks().astype(bool)
    right = key_padding(m[:2])
    assert right["mask"] is None and right["kv_lengths"].tolist() == [10, 6]
    general = key_padding(m)
    assert general["kv_lengths"] is None and general["mask"].shape == (4, 1, 1, 10)
    traced = jax.jit(lambda x: key_padding(x)["mask"])(m[:2])  # inside jit: always the mask
    np.testing.assert_array_equal(traced[:, 0, 0], m[:2])


@pytest.mark.parametrize("name", ["bert-pt", "clip-pt"])
def test_left_padded_and_holed_masks_match_transformers(name):
    """BERT (``last_hidden_state``, pooler) and CLIP text features on full, right-padded,
    left-padded and holed ``attention_mask`` rows, eager and under ``jit``."""
    import torch

    cls = "BertModel" if name == "bert-pt" else "CLIPModel"
    ref = torch_model(cls, FIXTURES / name)
    module, variables = mmjax.hf.load(FIXTURES / name)
    rng = np.random.default_rng(0)
    ids = rng.integers(1, 60, size=(4, 10)).astype(np.int32)
    mask = _masks()
    if name == "clip-pt":  # CLIP pools at the end-of-text id (63, the largest)
        ids[np.arange(4), [9, 5, 9, 8]] = 63
    with torch.no_grad():
        if name == "bert-pt":
            r = ref(input_ids=to_torch(ids).long(), attention_mask=to_torch(mask))
            want = [r.last_hidden_state, r.pooler_output]
        else:
            want = [ref.get_text_features(to_torch(ids).long(), attention_mask=to_torch(mask))]

    def run(ids, mask):
        if name == "bert-pt":
            out = module.apply(variables, ids, mask)
            return [out["last_hidden_state"], out["pooler_output"]]
        return [module.apply(variables, ids, mask.astype(bool), method="encode_text")]

    for fn in (run, jax.jit(run)):
        for w, g in zip(want, fn(jnp.asarray(ids), jnp.asarray(mask)), strict=True):
            assert max_diff(w, g) <= TOL
    # Before: the mask became lengths, so the left-padded row attended to the wrong keys.
    lengths = mask.sum(1)
    wrong = run(jnp.asarray(ids), jnp.asarray(np.arange(10)[None] < lengths[:, None]))
    assert max_diff(want[0][2], wrong[0][2]) > 1e-3


def test_mlm_never_masks_bos_or_other_special_tokens_by_default():
    """With no ``special_tokens`` configured, every token the tokenizer itself flags special
    (``tokenizers``' ``special_tokens_mask``: [BOS], [EOS], padding) is excluded."""
    tok = TextTokenizer.synthetic(12)
    ids = masking_ids(tok, "[MASK]", ())
    flagged = set()
    for enc in tok.tokenizer.encode_batch(["a red circle", "a"]):
        flagged |= {i for i, s in zip(enc.ids, enc.special_tokens_mask, strict=True) if s}
    assert flagged == {0, 2, 3} and flagged <= set(ids["special_ids"])
    tokens, pad = tok(["a small red circle at the top left"] * 512)
    masked, _, weights = mask_tokens(
        jax.random.PRNGKey(0), jnp.asarray(tokens), jnp.asarray(pad), ratio=0.5, **ids
    )
    selected = np.asarray(weights) > 0
    assert not selected[tokens == 2].any() and not selected[tokens == 3].any()
    assert selected.any()


def test_itm_hard_negatives_exclude_other_captions_of_the_same_image(monkeypatch):
    from mmjax.models import itm_mlm  # where the model samples its negatives

    drawn = []
    real = itm_mlm.sample_hard_negatives

    def spy(*args):
        out = real(*args)
        drawn.append((np.asarray(out[0]), np.asarray(out[1])))
        return out

    monkeypatch.setattr(itm_mlm, "sample_hard_negatives", spy)
    cfg = config_lib.load_config(f"{REPO}/configs/itm_mlm_synthetic.py:tiny")
    task = ITMMLMTask(cfg)
    params = task.init(jax.random.PRNGKey(0))["params"]
    tok = TextTokenizer.synthetic(cfg.model.text.context_length)
    captions = ["a small red circle", "a large blue cross", "a small green square", "a cyan"]
    tokens, pad = tok(captions)  # four distinct captions
    size = cfg.data.image_size
    images = np.random.default_rng(0).integers(0, 256, (4, size, size, 3), dtype=np.uint8)

    def weights(image_ids):
        out = task.model.apply(
            {"params": params},
            normalize_images(jnp.asarray(images), task.normalization),
            jnp.asarray(tokens),
            jnp.asarray(pad),
            jnp.asarray(tokens),
            jax.random.PRNGKey(1),
            image_ids=image_ids,
            method=ITMMLMModel.pretrain,
        )
        return np.asarray(out["itm_weights"][4:])  # the negative pairs' weights

    assert weights(None).tolist() == [1.0] * 8
    # Rows 0-1 and 2-3 are two images with two captions each: each row's negatives come
    # from the other image; one image with four captions has none.
    image_ids = np.asarray([0, 0, 1, 1])
    for seed in range(2):
        drawn.clear()
        images = np.random.default_rng(seed).integers(0, 256, images.shape, dtype=np.uint8)
        assert weights(jnp.asarray(image_ids)).tolist() == [1.0] * 8
        neg_text, neg_image = drawn[0]
        assert (image_ids[neg_text] != image_ids).all()
        assert (image_ids[neg_image] != image_ids).all()
    assert weights(jnp.asarray([7, 7, 7, 7])).tolist() == [0.0] * 8
