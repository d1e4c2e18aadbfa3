"""CLIPModel and SiglipModel <-> ``TwoTower`` (``image/``, ``text/``, projections, temperature)."""

from __future__ import annotations

from mmjax.hf.keymap import KeyTable, Rule
from mmjax.hf.tables.common import CLIP_LAYER, encoder_layers, linear, norm, params
from mmjax.hf.transforms import CONV, DENSE, HEADS_IN, HEADS_OUT, RESHAPE, Chunk

V, T = "vision_model", "text_model"
IGNORE = (r".*position_ids",)


def _text() -> list[Rule]:
    return [
        Rule(f"{T}.embeddings.token_embedding.weight", params("text/token_embed/embedding")),
        Rule(f"{T}.embeddings.position_embedding.weight", params("text/pos_embed")),
        *encoder_layers(f"{T}.encoder.layers", "text/encoder", CLIP_LAYER),
        *norm(f"{T}.final_layer_norm", "text/ln_final"),
    ]


def _vision_layers() -> list[Rule]:
    return [
        *encoder_layers(f"{V}.encoder.layers", "image/encoder", CLIP_LAYER),
        *norm(f"{V}.post_layernorm", "image/ln_post"),
    ]


def clip_table() -> KeyTable:
    """transformers ``CLIPModel``."""
    rules = [
        Rule(f"{V}.embeddings.class_embedding", params("image/cls_token")),
        Rule(f"{V}.embeddings.patch_embedding.weight", params("image/patch_embed/kernel"), CONV),
        Rule(
            f"{V}.embeddings.position_embedding.weight",
            params("image/pos_embed"),
            posemb_prefix=1,
        ),
        *norm(f"{V}.pre_layrnorm", "image/ln_pre"),
        *_vision_layers(),
        *_text(),
        Rule("visual_projection.weight", params("image_proj/kernel"), DENSE),
        Rule("text_projection.weight", params("text_proj/kernel"), DENSE),
        Rule("logit_scale", params("logit_scale")),
    ]
    return KeyTable("CLIPModel", rules, ignore=IGNORE)


def siglip_table() -> KeyTable:
    """transformers ``SiglipModel`` (MAP-head pooling, text head with bias, logit bias)."""
    head, mm = f"{V}.head", "image/map"
    fused = []
    for i, part in enumerate(("query", "key", "value")):
        fused += [
            Rule(
                f"{head}.attention.in_proj_weight",
                params(f"{mm}/attn/{part}/kernel"),
                Chunk(i, 3, HEADS_IN),
            ),
            Rule(
                f"{head}.attention.in_proj_bias",
                params(f"{mm}/attn/{part}/bias"),
                Chunk(i, 3, RESHAPE),
            ),
        ]
    rules = [
        *linear(f"{V}.embeddings.patch_embedding", "image/patch_embed", CONV),
        Rule(
            f"{V}.embeddings.position_embedding.weight",
            params("image/pos_embed"),
            posemb_prefix=0,
        ),
        *_vision_layers(),
        Rule(f"{head}.probe", params(f"{mm}/probe")),
        *fused,
        *linear(f"{head}.attention.out_proj", f"{mm}/attn/out", HEADS_OUT),
        *norm(f"{head}.layernorm", f"{mm}/ln"),
        *linear(f"{head}.mlp.fc1", f"{mm}/mlp/wi"),
        *linear(f"{head}.mlp.fc2", f"{mm}/mlp/wo"),
        *_text(),
        *linear(f"{T}.head", "text_proj"),
        Rule("logit_scale", params("logit_scale"), RESHAPE),
        Rule("logit_bias", params("logit_bias"), RESHAPE),
    ]
    return KeyTable("SiglipModel", rules, ignore=IGNORE)
