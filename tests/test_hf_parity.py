"""mmjax outputs match transformers' on checkpoints its PyTorch and Flax classes wrote."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import mmjax.hf
from tests.hf_reference import (
    FIXTURES,
    images,
    max_diff,
    require_transformers,
    text_batch,
    to_torch,
    torch_model,
)

TOL = 1e-5


@pytest.fixture(scope="module")
def torch_no_grad():
    require_transformers()
    import torch

    with torch.no_grad():
        yield


@pytest.mark.parametrize("name,cls", [("clip-pt", "CLIPModel"), ("siglip-pt", "SiglipModel")])
def test_two_tower_matches_torch(torch_no_grad, name, cls):
    ref = torch_model(cls, FIXTURES / name)
    module, variables = mmjax.hf.load(FIXTURES / name)
    px = images()
    ids, mask = text_batch(eos=63 if cls == "CLIPModel" else None)
    ref_mask = to_torch(mask)
    if cls == "SiglipModel":
        # SigLIP as big_vision trains it and SiglipProcessor feeds it: padded to max_length
        # with the pad id, no attention mask; mmjax gets the pipeline's padding mask.
        ids[1, 6:], ref_mask = ref.config.text_config.pad_token_id, None
    img = module.apply(variables, jnp.asarray(px), method="encode_image")
    txt = module.apply(variables, jnp.asarray(ids), jnp.asarray(mask, bool), method="encode_text")
    ref_img = ref.get_image_features(pixel_values=to_torch(px, nchw=True))
    ref_txt = ref.get_text_features(input_ids=to_torch(ids).long(), attention_mask=ref_mask)
    assert max_diff(ref_img, img) <= TOL
    assert max_diff(ref_txt, txt) <= TOL
    out = ref(
        input_ids=to_torch(ids).long(),
        attention_mask=ref_mask,
        pixel_values=to_torch(px, nchw=True),
    )
    mm = module.apply(variables, jnp.asarray(px), jnp.asarray(ids), jnp.asarray(mask, bool))
    logits = jnp.exp(mm["logit_scale"]) * mm["image"] @ mm["text"].T + mm["logit_bias"]
    assert max_diff(out.logits_per_image, logits) <= 1e-4


def test_siglip_text_through_the_training_task_matches_torch_without_a_mask(torch_no_grad):
    """The pipeline path (task built from ``configs/clip_hf_finetune.py:DIR``, as training,
    eval, zero-shot and ``init_from='hf:DIR'`` use it) with the data pipeline's padding
    mask gives ``SiglipModel.get_text_features(input_ids)`` (no mask) on padded ids."""
    from mmjax import config as config_lib
    from mmjax.tasks import build_task
    from tests.conftest import REPO

    directory = FIXTURES / "siglip-pt"
    ref = torch_model("SiglipModel", directory)
    cfg = config_lib.load_config(f"{REPO}/configs/clip_hf_finetune.py:{directory}")
    task = build_task(cfg)
    _, variables = mmjax.hf.load(directory)
    pad, n = ref.config.text_config.pad_token_id, cfg.model.text.context_length
    ids, mask = text_batch(vocab=64, seq=n, seed=3)
    ids[1, 6:], mask = pad, np.arange(n)[None] < np.array([[n], [6]])
    size = cfg.data.image_size
    batch = dict(
        image=np.random.default_rng(0).integers(0, 256, (2, size, size, 3), dtype=np.uint8),
        tokens=ids,
        padding_mask=mask,
    )
    want = ref.get_text_features(input_ids=to_torch(ids).long())
    want = want / want.norm(dim=-1, keepdim=True)
    for embed in (task.eval_step, jax.jit(task.eval_step)):  # eager and traced masks
        got = embed(variables["params"], batch)["text"]
        assert max_diff(want, got) <= TOL


@pytest.mark.parametrize(
    "name,cls", [("vit-pt", "ViTModel"), ("vit-cls-pt", "ViTForImageClassification")]
)
def test_vit_matches_torch(torch_no_grad, name, cls):
    ref = torch_model(cls, FIXTURES / name)
    module, variables = mmjax.hf.load(FIXTURES / name)
    px = images()
    out = module.apply(variables, jnp.asarray(px))
    r = ref(pixel_values=to_torch(px, nchw=True), output_hidden_states=True)
    if cls == "ViTModel":
        assert max_diff(r.last_hidden_state, out["last_hidden_state"]) <= TOL
        assert max_diff(r.pooler_output, out["pooler_output"]) <= TOL
    else:
        assert max_diff(r.logits, out["logits"]) <= TOL


@pytest.mark.parametrize("name,cls", [("bert-pt", "BertModel"), ("bert-mlm-pt", "BertForMaskedLM")])
def test_bert_matches_torch(torch_no_grad, name, cls):
    ref = torch_model(cls, FIXTURES / name)
    module, variables = mmjax.hf.load(FIXTURES / name)
    ids, mask = text_batch()
    types = (np.arange(10)[None] >= 4).astype(np.int32).repeat(2, 0)
    out = module.apply(variables, jnp.asarray(ids), jnp.asarray(mask), jnp.asarray(types))
    r = ref(
        input_ids=to_torch(ids).long(),
        attention_mask=to_torch(mask),
        token_type_ids=to_torch(types).long(),
    )
    if cls == "BertModel":
        assert max_diff(r.last_hidden_state, out["last_hidden_state"]) <= TOL
        assert max_diff(r.pooler_output, out["pooler_output"]) <= TOL
    else:
        assert max_diff(r.logits, out["logits"]) <= TOL


@pytest.mark.parametrize("name", ["resnet-pt", "resnet-basic-pt"])
def test_resnet_matches_torch(torch_no_grad, name):
    ref = torch_model("ResNetModel", FIXTURES / name)
    module, variables = mmjax.hf.load(FIXTURES / name)
    assert set(variables) == {"params", "batch_stats"}
    px = images(size=40)
    out = module.apply(variables, jnp.asarray(px))
    r = ref(pixel_values=to_torch(px, nchw=True))
    hidden = np.transpose(np.asarray(out["last_hidden_state"]), (0, 3, 1, 2))
    assert max_diff(r.last_hidden_state, hidden) <= TOL
    assert max_diff(r.pooler_output[:, :, 0, 0], out["pooler_output"]) <= TOL


def test_resnet_classifier_matches_torch(torch_no_grad, tmp_path):
    transformers = require_transformers()
    config = transformers.ResNetConfig.from_pretrained(FIXTURES / "resnet-pt", num_labels=4)
    transformers.ResNetForImageClassification(config).eval().save_pretrained(tmp_path)
    ref = torch_model("ResNetForImageClassification", tmp_path)
    module, variables = mmjax.hf.load(tmp_path)
    px = images(size=32)
    logits = module.apply(variables, jnp.asarray(px))["logits"]
    assert max_diff(ref(pixel_values=to_torch(px, nchw=True)).logits, logits) <= TOL
