"""Rule builders shared by the tables: linear layers, norms, transformer layers."""

from __future__ import annotations

from dataclasses import dataclass

from mmjax.hf.keymap import Rule
from mmjax.hf.transforms import (
    CONV,
    DENSE,
    HEADS_IN,
    HEADS_OUT,
    IDENTITY,
    RESHAPE,
    Reshape,
    Transform,
)


def params(path: str) -> str:
    return f"params/{path}"


def linear(
    hf: str,
    mm: str,
    weight: Transform = DENSE,
    bias: Transform = IDENTITY,
    base: bool = True,
) -> list[Rule]:
    """``hf.weight`` / ``hf.bias`` <-> ``mm/kernel`` / ``mm/bias``."""
    return [
        Rule(f"{hf}.weight", params(f"{mm}/kernel"), weight, base=base),
        Rule(f"{hf}.bias", params(f"{mm}/bias"), bias, base=base),
    ]


def norm(hf: str, mm: str, base: bool = True) -> list[Rule]:
    """LayerNorm ``hf.weight`` / ``hf.bias`` <-> ``mm/scale`` / ``mm/bias``."""
    return [
        Rule(f"{hf}.weight", params(f"{mm}/scale"), base=base),
        Rule(f"{hf}.bias", params(f"{mm}/bias"), base=base),
    ]


def vit_embeddings() -> list[Rule]:
    """transformers' ViT-family ``embeddings.{cls_token, position_embeddings,
    patch_embeddings.projection}`` <-> ``image/{cls_token, pos_embed, patch_embed}``."""
    return [
        Rule("embeddings.cls_token", params("image/cls_token"), Reshape(lead=2)),
        Rule(
            "embeddings.position_embeddings",
            params("image/pos_embed"),
            Reshape(lead=1),
            posemb_prefix=1,
        ),
        *linear("embeddings.patch_embeddings.projection", "image/patch_embed", CONV),
    ]


@dataclass(frozen=True)
class LayerNames:
    """HF sub-module names of one transformer layer (relative to the layer)."""

    q: str
    k: str
    v: str
    out: str
    ln1: str
    ln2: str
    wi: str
    wo: str


CLIP_LAYER = LayerNames(
    "self_attn.q_proj",
    "self_attn.k_proj",
    "self_attn.v_proj",
    "self_attn.out_proj",
    "layer_norm1",
    "layer_norm2",
    "mlp.fc1",
    "mlp.fc2",
)
VIT_LAYER = LayerNames(
    "attention.attention.query",
    "attention.attention.key",
    "attention.attention.value",
    "attention.output.dense",
    "layernorm_before",
    "layernorm_after",
    "intermediate.dense",
    "output.dense",
)
BERT_LAYER = LayerNames(
    "attention.self.query",
    "attention.self.key",
    "attention.self.value",
    "attention.output.dense",
    "attention.output.LayerNorm",
    "output.LayerNorm",
    "intermediate.dense",
    "output.dense",
)


def attention(hf: dict[str, str], mm: str) -> list[Rule]:
    """Separate q/k/v/out linears (``hf`` maps ``query``/``key``/``value``/``out`` to HF
    names) <-> ``mm/{query,key,value,out}`` heads-shaped kernels."""
    rules = []
    for part in ("query", "key", "value"):
        rules += linear(hf[part], f"{mm}/{part}", HEADS_IN, RESHAPE)
    return rules + linear(hf["out"], f"{mm}/out", HEADS_OUT)


def encoder_layers(hf: str, mm: str, names: LayerNames) -> list[Rule]:
    """Every ``{hf}.{i}`` layer <-> ``{mm}/layer_{i}`` of ``models/layers.Encoder``."""
    layer, block = f"{hf}.{{i}}", f"{mm}/layer_{{i}}"
    hf_attn = dict(query=names.q, key=names.k, value=names.v, out=names.out)
    return [
        *attention({k: f"{layer}.{v}" for k, v in hf_attn.items()}, f"{block}/attn"),
        *norm(f"{layer}.{names.ln1}", f"{block}/ln1"),
        *norm(f"{layer}.{names.ln2}", f"{block}/ln2"),
        *linear(f"{layer}.{names.wi}", f"{block}/mlp/wi"),
        *linear(f"{layer}.{names.wo}", f"{block}/mlp/wo"),
    ]
