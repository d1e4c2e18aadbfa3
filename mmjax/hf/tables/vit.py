"""ViTModel / ViTForImageClassification <-> ``HFViT`` (``image/``, ``pooler/``, ``head/``)."""

from __future__ import annotations

from mmjax.hf.keymap import KeyTable, Rule
from mmjax.hf.tables.common import VIT_LAYER, encoder_layers, linear, norm, params
from mmjax.hf.transforms import CONV, Reshape


def vit_table() -> KeyTable:
    """Base keys carry ``vit.`` in ``ViTForImageClassification`` checkpoints."""
    rules = [
        Rule("embeddings.cls_token", params("image/cls_token"), Reshape(lead=2)),
        Rule(
            "embeddings.position_embeddings",
            params("image/pos_embed"),
            Reshape(lead=1),
            posemb_prefix=1,
        ),
        *linear("embeddings.patch_embeddings.projection", "image/patch_embed", CONV),
        *encoder_layers("encoder.layer", "image/encoder", VIT_LAYER),
        *norm("layernorm", "image/ln_post"),
        *linear("pooler.dense", "pooler/dense"),
        *linear("classifier", "head/dense", base=False),
    ]
    return KeyTable("ViT", rules, prefix="vit", ignore=(r"embeddings\.mask_token",))
