"""load -> save -> transformers from_pretrained gives back the same model."""

from __future__ import annotations

import jax
import numpy as np
import pytest

import mmjax.hf
from tests.hf_reference import (
    FIXTURES,
    images,
    max_diff,
    save_roundtrip,
    text_batch,
    to_torch,
)

CASES = [
    ("clip-pt", "CLIPModel"),
    ("siglip-pt", "SiglipModel"),
    ("vit-pt", "ViTModel"),
    ("vit-cls-pt", "ViTForImageClassification"),
    ("bert-pt", "BertModel"),
    ("bert-mlm-pt", "BertForMaskedLM"),
    ("resnet-pt", "ResNetModel"),
]


def forward(model, cls: str):
    if cls in ("CLIPModel", "SiglipModel"):
        ids, mask = text_batch(eos=63)
        return model(
            input_ids=to_torch(ids).long(),
            attention_mask=to_torch(mask),
            pixel_values=to_torch(images(), nchw=True),
        ).logits_per_image
    if cls.startswith("Bert"):
        ids, mask = text_batch()
        out = model(input_ids=to_torch(ids).long(), attention_mask=to_torch(mask))
    else:
        out = model(pixel_values=to_torch(images(size=24), nchw=True))
    return out.logits if "For" in cls else out.last_hidden_state


@pytest.mark.parametrize("name,cls", CASES)
def test_roundtrip_through_transformers(tmp_path, name, cls):
    import torch

    skip = ("num_batches_tracked",)
    original, reloaded, _ = save_roundtrip(cls, FIXTURES / name, tmp_path, skip)
    with torch.no_grad():
        assert max_diff(forward(original, cls), forward(reloaded, cls).numpy()) == 0.0


def test_saved_checkpoint_loads_back_into_mmjax(tmp_path):
    module, variables = mmjax.hf.load(FIXTURES / "clip-flax")
    mmjax.hf.save(tmp_path, module, variables)
    again, reloaded = mmjax.hf.load(tmp_path)
    assert again == module
    for a, b in zip(jax.tree.leaves(variables), jax.tree.leaves(reloaded), strict=True):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
