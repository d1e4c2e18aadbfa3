"""Hugging Face ``config.json`` -> mmjax modules, per architecture.

``build(hf_config, dtype)`` derives the mmjax module (activation, LayerNorm eps,
pre/post-LN, QKV bias, vocab, positions, image / patch size, projection dim) and
returns it with its key table; ``config_export.hf_config(module)`` is the inverse.
Keys that transformers leaves out of ``config.json`` take transformers' defaults.
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax.numpy as jnp
import ml_collections

from mmjax.hf import config_vision
from mmjax.hf.defaults import DEFAULTS
from mmjax.hf.keymap import KeyTable
from mmjax.hf.modules import HFBert, HFResNet, HFViT
from mmjax.hf.tables.bert import bert_table
from mmjax.hf.tables.clip import clip_table, siglip_table
from mmjax.hf.tables.resnet import resnet_table
from mmjax.hf.tables.vit import vit_table
from mmjax.models.spec import DTYPES
from mmjax.models.towers import build_image_encoder, build_text_encoder, build_two_tower

HF_ACTS = {
    "gelu": "gelu",
    "gelu_new": "gelu_tanh",
    "gelu_fast": "gelu_tanh",
    "gelu_pytorch_tanh": "gelu_tanh",
    "quick_gelu": "quick_gelu",
    "relu": "relu",
    "silu": "silu",
    "swish": "silu",
}
ARCHITECTURES = {
    "CLIPModel": "clip",
    "SiglipModel": "siglip",
    "ViTModel": "vit",
    "ViTForImageClassification": "vit",
    "BertModel": "bert",
    "BertForMaskedLM": "bert",
    "ResNetModel": "resnet",
    "ResNetForImageClassification": "resnet",
    **{arch: family for arch, (family, _) in config_vision.ARCHITECTURES.items()},
}
BASE_CLASS = {
    "clip": "CLIPModel",
    "siglip": "SiglipModel",
    "vit": "ViTModel",
    "bert": "BertModel",
    "resnet": "ResNetModel",
    **config_vision.BASE_CLASS,
}

CLIP_TEXT, CLIP_VISION = DEFAULTS["clip_text"], DEFAULTS["clip_vision"]
SIGLIP_TEXT, SIGLIP_VISION = DEFAULTS["siglip_text"], DEFAULTS["siglip_vision"]
VIT, BERT, RESNET = DEFAULTS["vit"], DEFAULTS["bert"], DEFAULTS["resnet"]


class ConfigMapError(ValueError):
    """A config.json (or module) mmjax cannot map; the message names the key."""


def _with_defaults(cfg: dict[str, Any], defaults: dict[str, Any]) -> dict[str, Any]:
    return {**defaults, **{k: v for k, v in cfg.items() if v is not None}}


def _act(name: str, where: str) -> str:
    if name not in HF_ACTS:
        raise ConfigMapError(f"{where}: hidden_act {name!r} has no mmjax equivalent ({HF_ACTS})")
    return HF_ACTS[name]


def architecture(cfg: dict[str, Any]) -> str:
    """The transformers class name of ``cfg`` (``architectures[0]``, else from model_type)."""
    for name in cfg.get("architectures") or []:
        if name in ARCHITECTURES:
            return name
    if cfg.get("model_type") in BASE_CLASS:
        return BASE_CLASS[cfg["model_type"]]
    raise ConfigMapError(
        f"config.json: architectures {cfg.get('architectures')} / model_type "
        f"{cfg.get('model_type')!r} not supported; known: {sorted(ARCHITECTURES)}"
    )


def _dtype_name(dtype: Any) -> str:
    for name, value in DTYPES.items():
        if jnp.dtype(value) == jnp.dtype(dtype):
            return name
    raise ConfigMapError(f"dtype {dtype} not supported; known: {sorted(DTYPES)}")


# HF config key -> mmjax module field, shared by both directions (config_export.py).
ENCODER_FIELDS = {
    "hidden_size": "width",
    "num_hidden_layers": "depth",
    "num_attention_heads": "num_heads",
    "intermediate_size": "mlp_dim",
    "layer_norm_eps": "ln_eps",
}
VISION_FIELDS = {**ENCODER_FIELDS, "image_size": "image_size", "patch_size": "patch_size"}
TEXT_FIELDS = {
    **ENCODER_FIELDS,
    "vocab_size": "vocab_size",
    "max_position_embeddings": "context_length",
}


def _fields(cfg: dict[str, Any], fields: dict[str, str], where: str) -> dict[str, Any]:
    """mmjax encoder config from an HF (sub-)config: ``fields`` plus the activation. Sizes
    must be positive (``patch_size: 0`` would otherwise fail deep inside the model)."""
    for hf in fields:
        value = cfg[hf]
        if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
            raise ConfigMapError(f"{where}.{hf} = {value!r}: must be a positive number")
    return {**{mm: cfg[hf] for hf, mm in fields.items()}, "act": _act(cfg["hidden_act"], where)}


def _vit_fields(v: dict[str, Any], where: str) -> dict[str, Any]:
    return _fields(v, VISION_FIELDS, where)


def _text_fields(t: dict[str, Any], where: str) -> dict[str, Any]:
    return {"kind": "clip", **_fields(t, TEXT_FIELDS, where)}


def model_config(cfg: dict[str, Any], dtype: Any = jnp.float32) -> ml_collections.ConfigDict:
    """The mmjax ``config.model`` section for an HF CLIP / SigLIP ``config.json``:
    ``build_two_tower`` of it is the model ``load`` returns (so a training config can
    start from an HF directory with ``c.model = model_config(read_config(DIR))``)."""
    arch = architecture(cfg)
    if arch not in ("CLIPModel", "SiglipModel"):
        raise ConfigMapError(f"model_config: {arch} is not a two-tower model")
    siglip = arch == "SiglipModel"
    t = _with_defaults(cfg.get("text_config") or {}, SIGLIP_TEXT if siglip else CLIP_TEXT)
    v = _with_defaults(cfg.get("vision_config") or {}, SIGLIP_VISION if siglip else CLIP_VISION)
    image = _vit_fields(v, "vision_config")
    text = _text_fields(t, "text_config")
    if siglip:
        if not v["vision_use_head"]:
            raise ConfigMapError("vision_config.vision_use_head=False (no pooled output)")
        image.update(pool="map", posemb="learn", patch_bias=True, map_act=image["act"])
        # SigLIP's text tower runs unmasked (big_vision; transformers' SiglipProcessor pads
        # to max_length and passes no attention mask): padding is attended to.
        text.update(causal=False, pool="last", eos_id=t["eos_token_id"], use_padding_mask=False)
        embed_dim = t.get("projection_size") or t["hidden_size"]
    else:
        image.update(pool="cls", posemb="learn", patch_bias=False, pre_norm_embeddings=True)
        # CLIP configs from before transformers#24773 say eos_token_id=2 and pool at the
        # largest id, which is the end-of-text token (the last of the vocabulary).
        eos = t["eos_token_id"]
        text.update(causal=True, pool="eos", eos_id=t["vocab_size"] - 1 if eos == 2 else eos)
        embed_dim = cfg.get("projection_dim", 512)
    m = ml_collections.ConfigDict()
    m.dtype = _dtype_name(dtype)
    m.attention_impl = ""
    m.embed_dim = embed_dim
    m.logit_scale_init = 0.0 if siglip else cfg.get("logit_scale_init_value", 2.6592)
    m.logit_bias_init = 0.0 if siglip else None
    m.image_projection = not siglip
    m.proj_bias = siglip
    m.image = image
    m.text = text
    return m


def build(
    cfg: dict[str, Any], dtype: Any = jnp.float32, keys: set[str] | None = None
) -> tuple[nn.Module, KeyTable]:
    """``(module, key table)`` for an HF ``config.json`` dict. ``keys`` (the checkpoint's)
    decide whether a ``ViTModel`` / ``BertModel`` checkpoint carries its pooler. The
    encoders come from mmjax's own builders (``models/towers.py``)."""
    arch = architecture(cfg)
    keys = keys or set()
    if arch in ("CLIPModel", "SiglipModel"):
        table = siglip_table() if arch == "SiglipModel" else clip_table()
        return build_two_tower(model_config(cfg, dtype)), table
    if arch in config_vision.ARCHITECTURES:
        return config_vision.build(cfg, arch, dtype)
    num_labels = int(cfg.get("num_labels") or len(cfg.get("id2label") or {}) or 2)
    head = arch.endswith("ForImageClassification")
    has_pooler = not keys or any("pooler.dense" in k for k in keys)
    if arch.startswith("ViT"):
        v = _with_defaults(cfg, VIT)
        if v["pooler_act"] != "tanh":
            raise ConfigMapError(f"config.json: pooler_act {v['pooler_act']!r} (want 'tanh')")
        image = _vit_fields(v, "config.json")
        image.update(pool="cls", posemb="learn", norm_tokens=True, qkv_bias=v["qkv_bias"])
        image = build_image_encoder(ml_collections.ConfigDict(image), dtype, None)
        return HFViT(image, not head and has_pooler, num_labels if head else 0, dtype), vit_table()
    if arch.startswith("Bert"):
        b = _with_defaults(cfg, BERT)
        if b["position_embedding_type"] != "absolute":
            raise ConfigMapError(
                f"config.json: position_embedding_type {b['position_embedding_type']!r} "
                "(only 'absolute' is supported)"
            )
        mlm = arch == "BertForMaskedLM"
        text = dict(
            _text_fields(b, "config.json"),
            kind="bert",
            type_vocab_size=b["type_vocab_size"],
            pool="cls" if not mlm and has_pooler else "none",
        )
        text = build_text_encoder(ml_collections.ConfigDict(text), dtype, None)
        return HFBert(text, mlm, dtype), bert_table()
    r = _with_defaults(cfg, RESNET)
    image = dict(
        kind="resnet",
        act=_act(r["hidden_act"], "config.json"),
        **{k: r[k] for k in ("embedding_size", "hidden_sizes", "depths", "layer_type")},
        **{k: r[k] for k in ("downsample_in_first_stage", "downsample_in_bottleneck")},
    )
    image = build_image_encoder(ml_collections.ConfigDict(image), dtype, None)
    return HFResNet(image, num_labels if head else 0, dtype), resnet_table()
