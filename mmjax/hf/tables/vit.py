"""ViTModel / ViTForImageClassification <-> ``HFViT`` (``image/``, ``pooler/``, ``head/``)."""

from __future__ import annotations

from mmjax.hf.keymap import KeyTable
from mmjax.hf.tables.common import VIT_LAYER, encoder_layers, linear, norm, vit_embeddings


def vit_table() -> KeyTable:
    """Base keys carry ``vit.`` in ``ViTForImageClassification`` checkpoints."""
    rules = [
        *vit_embeddings(),
        *encoder_layers("encoder.layer", "image/encoder", VIT_LAYER),
        *norm("layernorm", "image/ln_post"),
        *linear("pooler.dense", "pooler/dense"),
        *linear("classifier", "head/dense", base=False),
    ]
    return KeyTable("ViT", rules, prefix="vit", ignore=(r"embeddings\.mask_token",))
