"""BEiT and DINOv2 ``config.json`` <-> ``HFVisionModel`` (both directions, one family each).

``image_config(cfg)`` is the mmjax ``config.model.image`` section of a BEiT / DINOv2
``config.json`` (what a LiT config uses for its locked tower); ``build`` wraps it in
``HFVisionModel`` with the key table; ``export`` is the inverse.
"""

from __future__ import annotations

from typing import Any

import jax.numpy as jnp
import ml_collections

from mmjax.hf.defaults import DEFAULTS
from mmjax.hf.keymap import KeyTable
from mmjax.hf.modules import HFVisionModel
from mmjax.hf.tables.beit import beit_table, dinov2_table
from mmjax.models.towers import build_image_encoder
from mmjax.models.vision import VisionTransformer

BEIT, DINOV2 = DEFAULTS["beit"], DEFAULTS["dinov2"]  # transformers' defaults
# transformers class -> (family, has a classifier)
ARCHITECTURES = {
    "BeitModel": ("beit", False),
    "BeitForImageClassification": ("beit", True),
    "Dinov2Model": ("dinov2", False),
    "Dinov2WithRegistersModel": ("dinov2_with_registers", False),
}
BASE_CLASS = {"beit": "BeitModel", "dinov2": "Dinov2Model"}
BASE_CLASS["dinov2_with_registers"] = "Dinov2WithRegistersModel"


def _error(msg: str) -> Exception:
    from mmjax.hf.config_map import ConfigMapError  # config_map imports this module

    return ConfigMapError(msg)


def dinov2_mlp_dim(width: int, mlp_ratio: float, swiglu: bool) -> int:
    """transformers' hidden width of ``Dinov2MLP`` / ``Dinov2SwiGLUFFN``."""
    hidden = int(width * mlp_ratio)
    return (int(hidden * 2 / 3) + 7) // 8 * 8 if swiglu else hidden


def _mlp_ratio(width: int, mlp_dim: int, swiglu: bool) -> float:
    """A ``mlp_ratio`` that gives back ``mlp_dim`` (4 when it does, as the released models)."""
    hidden = [4 * width] + list(range(max(1, mlp_dim), 2 * mlp_dim + 16))
    for h in hidden:
        ratio = h / width
        if dinov2_mlp_dim(width, ratio, swiglu) == mlp_dim:
            return float(ratio)
    raise _error(f"no DINOv2 mlp_ratio gives mlp_dim {mlp_dim} at width {width}")


def image_config(cfg: dict[str, Any]) -> dict[str, Any]:
    """``config.model.image`` of a BEiT / DINOv2 ``config.json`` (``model_type`` decides)."""
    from mmjax.hf.config_map import _act, _with_defaults, architecture

    family, _ = ARCHITECTURES[architecture(cfg)]
    common = dict(pool="cls", posemb="learn", norm_tokens=True, patch_bias=True)
    if family == "beit":
        b = _with_defaults(cfg, BEIT)
        image = dict(
            common,
            mlp_dim=b["intermediate_size"],
            key_bias=False,
            posemb="learn" if b["use_absolute_position_embeddings"] else "none",
            rel_pos_layer=bool(b["use_relative_position_bias"]),
            rel_pos_shared=bool(b["use_shared_relative_position_bias"]),
            layer_scale=b["layer_scale_init_value"] if b["layer_scale_init_value"] > 0 else None,
        )
        if b["use_mean_pooling"]:
            image.update(pool="cls_mean", norm_tokens=False)
    else:
        defaults = dict(DINOV2, num_register_tokens=4) if "registers" in family else DINOV2
        b = _with_defaults(cfg, defaults)
        swiglu = bool(b["use_swiglu_ffn"])
        image = dict(
            common,
            mlp_dim=dinov2_mlp_dim(b["hidden_size"], b["mlp_ratio"], swiglu),
            qkv_bias=bool(b["qkv_bias"]),
            layer_scale=float(b["layerscale_value"]),
            mlp_gated=swiglu,
            num_registers=int(b["num_register_tokens"]) if "registers" in family else 0,
            posemb_interp="bicubic_aa" if "registers" in family else "bicubic",
        )
    if b["num_channels"] != 3:
        raise _error(f"config.json: num_channels {b['num_channels']} (mmjax takes RGB)")
    image.update(
        image_size=b["image_size"],
        patch_size=b["patch_size"],
        width=b["hidden_size"],
        depth=b["num_hidden_layers"],
        num_heads=b["num_attention_heads"],
        ln_eps=b["layer_norm_eps"],
        act="silu" if image.get("mlp_gated") else _act(b["hidden_act"], "config.json"),
    )
    return image


def build(cfg: dict[str, Any], arch: str, dtype: Any = jnp.float32) -> tuple[Any, KeyTable]:
    """``(HFVisionModel, key table)`` for a BEiT / DINOv2 ``config.json``."""
    family, head = ARCHITECTURES[arch]
    image = image_config(cfg)
    num_labels = int(cfg.get("num_labels") or len(cfg.get("id2label") or {}) or 2) if head else 0
    module = HFVisionModel(
        build_image_encoder(ml_collections.ConfigDict(image), dtype, None),
        family,
        num_labels,
        dtype,
    )
    return module, _table(module)


def _table(module: HFVisionModel) -> KeyTable:
    if module.family == "beit":
        return beit_table(module.image.pool == "cls_mean")
    return dinov2_table(module.image.mlp_gated, prefix=module.family)


def export(module: HFVisionModel) -> tuple[dict[str, Any], KeyTable, bool]:
    """``(config.json dict, key table, with_prefix)``; an option transformers' class
    cannot express is an error naming it."""
    from mmjax.hf.config_export import MM_ACTS, _labels, _require

    v: VisionTransformer = module.image
    common = {
        "patch_bias": v.patch_bias,
        "not pre_norm_embeddings": not v.pre_norm_embeddings,
        "image_size % patch_size == 0": v.image_size % v.patch_size == 0,
    }
    cfg = dict(
        hidden_size=v.width,
        num_hidden_layers=v.depth,
        num_attention_heads=v.num_heads,
        layer_norm_eps=v.ln_eps,
        image_size=v.image_size,
        patch_size=v.patch_size,
        num_channels=3,
    )
    if module.family == "beit":
        _require(
            {
                **common,
                "pool in ('cls', 'cls_mean')": v.pool in ("cls", "cls_mean"),
                "norm_tokens == (pool == 'cls')": v.norm_tokens == (v.pool == "cls"),
                "posemb in ('learn', 'none')": v.posemb in ("learn", "none"),
                "not key_bias": not v.key_bias and v.qkv_bias,
                "not mlp_gated": not v.mlp_gated,
                "num_registers == 0": v.num_registers == 0,
                "act in MM_ACTS": v.act in MM_ACTS,
            },
            "this BEiT",
        )
        cfg.update(
            model_type="beit",
            intermediate_size=v.mlp_dim,
            hidden_act=MM_ACTS[v.act],
            use_absolute_position_embeddings=v.posemb == "learn",
            use_relative_position_bias=v.rel_pos_layer,
            use_shared_relative_position_bias=v.rel_pos_shared,
            layer_scale_init_value=v.layer_scale or 0.0,
            use_mean_pooling=v.pool == "cls_mean",
        )
    else:
        registers = module.family == "dinov2_with_registers"
        interp = "bicubic_aa" if registers else "bicubic"  # transformers' resizing
        _require(
            {
                **common,
                "pool='cls'": v.pool == "cls",
                "norm_tokens": v.norm_tokens,
                "posemb='learn'": v.posemb == "learn",
                "layer_scale": v.layer_scale is not None,
                "key_bias": v.key_bias,
                "no relative position bias": not (v.rel_pos_layer or v.rel_pos_shared),
                "act='silu' with mlp_gated": v.act == "silu" or not v.mlp_gated,
                "act in MM_ACTS": v.act in MM_ACTS,
                "num_registers only with registers": registers or v.num_registers == 0,
                f"posemb_interp in ('none', {interp!r})": v.posemb_interp in ("none", interp),
            },
            "this DINOv2",
        )
        cfg.update(
            model_type=module.family,
            mlp_ratio=_mlp_ratio(v.width, v.mlp_dim, v.mlp_gated),
            hidden_act="gelu" if v.mlp_gated else MM_ACTS[v.act],
            qkv_bias=v.qkv_bias,
            layerscale_value=v.layer_scale,
            use_swiglu_ffn=v.mlp_gated,
        )
        if registers:
            cfg.update(num_register_tokens=v.num_registers)
    cfg.update(architectures=[BASE_CLASS[module.family]])
    if module.num_labels:
        if module.family != "beit":
            raise _error("save: only BEiT exports a classifier (BeitForImageClassification)")
        cfg.update(architectures=["BeitForImageClassification"], **_labels(module.num_labels))
    return cfg, _table(module), bool(module.num_labels)
