"""mmjax modules -> Hugging Face ``config.json`` (the inverse of ``config_map.build``).

``hf_config(module)`` gives the config dict transformers' ``from_pretrained`` needs, the
key table and whether base-model keys carry the ``base_model_prefix``; options that
transformers cannot express are an error naming them.
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn

from mmjax.hf.config_map import TEXT_FIELDS, VISION_FIELDS, ConfigMapError
from mmjax.hf.keymap import KeyTable
from mmjax.hf.modules import HFBert, HFResNet, HFVisionModel, HFViT
from mmjax.hf.tables.bert import bert_table
from mmjax.hf.tables.clip import clip_table, siglip_table
from mmjax.hf.tables.resnet import resnet_table
from mmjax.hf.tables.vit import vit_table
from mmjax.models.text import CLIPTextTransformer
from mmjax.models.towers import TwoTower
from mmjax.models.vision import VisionTransformer

MM_ACTS = {
    "gelu": "gelu",
    "gelu_tanh": "gelu_pytorch_tanh",
    "quick_gelu": "quick_gelu",
    "relu": "relu",
    "silu": "silu",
}


def _labels(n: int) -> dict[str, Any]:
    return {
        "id2label": {str(i): f"LABEL_{i}" for i in range(n)},
        "label2id": {f"LABEL_{i}": i for i in range(n)},
    }


def _mm_act(name: str) -> str:
    if name not in MM_ACTS:
        raise ConfigMapError(f"activation {name!r} has no transformers equivalent")
    return MM_ACTS[name]


def _require(checks: dict[str, bool], what: str) -> None:
    bad = [name for name, ok in checks.items() if not ok]
    if bad:
        raise ConfigMapError(f"{what} has no transformers equivalent: needs " + ", ".join(bad))


def _fields(module: nn.Module, fields: dict[str, str]) -> dict[str, Any]:
    """HF (sub-)config entries from an mmjax encoder: ``fields`` plus the activation."""
    return {
        **{hf: getattr(module, mm) for hf, mm in fields.items()},
        "hidden_act": _mm_act(module.act),
    }


def _vit_config(v: VisionTransformer) -> dict[str, Any]:
    _require(
        {
            "no BEiT/DINOv2 options": (
                v.key_bias
                and v.layer_scale is None
                and not (v.mlp_gated or v.rel_pos_layer or v.rel_pos_shared)
                and v.num_registers == 0
                and v.posemb_interp == "none"
                and v.pool != "cls_mean"
            )
        },
        "this ViT (save it as BEiT / DINOv2)",
    )
    return dict(_fields(v, VISION_FIELDS), num_channels=3)


def _text_config(t: CLIPTextTransformer) -> dict[str, Any]:
    return _fields(t, TEXT_FIELDS)


def _two_tower_config(m: TwoTower) -> tuple[dict[str, Any], KeyTable, bool]:
    v, t = m.image, m.text
    if not isinstance(v, VisionTransformer) or not isinstance(t, CLIPTextTransformer):
        raise ConfigMapError("save: only ViT image and CLIP-style text towers map to CLIP/SigLIP")
    if not m.image_projection:  # SigLIP
        _require(
            {
                "image.pool='map'": v.pool == "map",
                "image.posemb='learn'": v.posemb == "learn",
                "image.patch_bias": v.patch_bias,
                "not image.pre_norm_embeddings": not v.pre_norm_embeddings,
                "text.pool='last'": t.pool == "last",
                "not text.causal": not t.causal,
                "not text.use_padding_mask": not t.use_padding_mask,
                "proj_bias": m.proj_bias,
                "logit_bias": m.logit_bias_init is not None,
                "map_act == act": v.map_act == v.act,
            },
            "this SigLIP-like TwoTower",
        )
        text = dict(_text_config(t), projection_size=m.embed_dim, model_type="siglip_text_model")
        vision = dict(_vit_config(v), model_type="siglip_vision_model")
        cfg = dict(
            architectures=["SiglipModel"],
            model_type="siglip",
            text_config=text,
            vision_config=vision,
        )
        return cfg, siglip_table(), False
    _require(
        {
            "image.pool='cls'": v.pool == "cls",
            "image.posemb='learn'": v.posemb == "learn",
            "not image.patch_bias": not v.patch_bias,
            "image.pre_norm_embeddings": v.pre_norm_embeddings,
            "not image.norm_tokens": not v.norm_tokens,
            "text.causal": t.causal,
            "text.pool='eos'": t.pool == "eos",
            "not proj_bias": not m.proj_bias,
            "no logit_bias": m.logit_bias_init is None,
        },
        "this CLIP-like TwoTower",
    )
    text = dict(
        _text_config(t),
        eos_token_id=t.eos_id,
        model_type="clip_text_model",
        projection_dim=m.embed_dim,
    )
    vision = dict(_vit_config(v), model_type="clip_vision_model", projection_dim=m.embed_dim)
    cfg = dict(
        architectures=["CLIPModel"],
        model_type="clip",
        projection_dim=m.embed_dim,
        logit_scale_init_value=m.logit_scale_init,
        text_config=text,
        vision_config=vision,
    )
    return cfg, clip_table(), False


def hf_config(module: nn.Module) -> tuple[dict[str, Any], KeyTable, bool]:
    """``(config.json dict, key table, with_prefix)`` for an mmjax module: the inverse of
    ``build``. Raises ``ConfigMapError`` naming the options transformers cannot express."""
    if isinstance(module, TwoTower):
        return _two_tower_config(module)
    if isinstance(module, HFVisionModel):
        from mmjax.hf import config_vision

        return config_vision.export(module)
    if isinstance(module, HFViT):
        v = module.image
        _require(
            {
                "pool='cls'": v.pool == "cls",
                "posemb='learn'": v.posemb == "learn",
                "norm_tokens": v.norm_tokens,
                "patch_bias": v.patch_bias,
                "not pre_norm_embeddings": not v.pre_norm_embeddings,
            },
            "this ViT",
        )
        cfg = dict(_vit_config(v), model_type="vit", qkv_bias=v.qkv_bias)
        if module.num_labels:
            cfg.update(architectures=["ViTForImageClassification"], **_labels(module.num_labels))
        else:
            cfg.update(architectures=["ViTModel"])
        return cfg, vit_table(), bool(module.num_labels)
    if isinstance(module, HFBert):
        t = module.text
        _require({"pool in ('cls', 'none')": t.pool in ("cls", "none")}, "this BERT")
        cfg = dict(
            architectures=["BertForMaskedLM" if module.mlm else "BertModel"],
            model_type="bert",
            type_vocab_size=t.type_vocab_size,
            **_fields(t, {**TEXT_FIELDS, "max_position_embeddings": "context_length"}),
        )
        return cfg, bert_table(), module.mlm
    if isinstance(module, HFResNet):
        r = module.image
        cfg = dict(
            model_type="resnet",
            embedding_size=r.embedding_size,
            hidden_sizes=list(r.hidden_sizes),
            depths=list(r.depths),
            layer_type=r.layer_type,
            hidden_act=_mm_act(r.act),
            downsample_in_first_stage=r.downsample_in_first_stage,
            downsample_in_bottleneck=r.downsample_in_bottleneck,
        )
        if module.num_labels:
            arch = "ResNetForImageClassification"
            cfg.update(architectures=[arch], **_labels(module.num_labels))
        else:
            cfg.update(architectures=["ResNetModel"])
        return cfg, resnet_table(), bool(module.num_labels)
    raise ConfigMapError(f"save: no transformers class for {type(module).__name__}")
