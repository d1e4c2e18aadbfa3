"""BeitModel / BeitForImageClassification and Dinov2Model / Dinov2WithRegistersModel
<-> ``HFVisionModel`` (``image/``, ``head/``)."""

from __future__ import annotations

from mmjax.hf.keymap import KeyTable, Rule
from mmjax.hf.tables.common import attention, linear, norm, params, vit_embeddings
from mmjax.hf.transforms import DENSE, IDENTITY, Chunk, Reshape

L, B = "encoder.layer.{i}", "image/encoder/layer_{i}"
RPB = "relative_position_bias.relative_position_bias_table"


def _attention(hf_norm1: str, hf_norm2: str) -> list[Rule]:
    hf = {p: f"{L}.attention.attention.{p}" for p in ("query", "key", "value")}
    return [
        *attention(dict(hf, out=f"{L}.attention.output.dense"), f"{B}/attn"),
        *norm(f"{L}.{hf_norm1}", f"{B}/ln1"),
        *norm(f"{L}.{hf_norm2}", f"{B}/ln2"),
    ]


def beit_table(mean_pooling: bool) -> KeyTable:
    """The final norm is ``pooler.layernorm`` (after mean pooling) or ``layernorm``."""
    rules = [
        *vit_embeddings(),
        Rule(f"encoder.{RPB}", params("image/rel_pos_bias/table")),
        Rule(f"{L}.attention.attention.{RPB}", params(f"{B}/rel_pos_bias/table")),
        *_attention("layernorm_before", "layernorm_after"),
        *linear(f"{L}.intermediate.dense", f"{B}/mlp/wi"),
        *linear(f"{L}.output.dense", f"{B}/mlp/wo"),
        Rule(f"{L}.lambda_1", params(f"{B}/ls1")),
        Rule(f"{L}.lambda_2", params(f"{B}/ls2")),
        *norm("pooler.layernorm" if mean_pooling else "layernorm", "image/ln_post"),
        *linear("classifier", "head/dense", base=False),
    ]
    ignore = (r".*relative_position_index", r"embeddings\.mask_token")
    return KeyTable("BEiT", rules, prefix="beit", ignore=ignore)


def dinov2_table(swiglu: bool, prefix: str = "dinov2") -> KeyTable:
    """``swiglu``: the fused ``mlp.weights_in [2 * mlp, D]`` holds the gate (first half,
    ``mlp/wi_gate``) and the linear branch (``mlp/wi``)."""
    if swiglu:
        w_in = f"{L}.mlp.weights_in"
        mlp = [
            Rule(f"{w_in}.weight", params(f"{B}/mlp/wi_gate/kernel"), Chunk(0, 2, DENSE)),
            Rule(f"{w_in}.bias", params(f"{B}/mlp/wi_gate/bias"), Chunk(0, 2, IDENTITY)),
            Rule(f"{w_in}.weight", params(f"{B}/mlp/wi/kernel"), Chunk(1, 2, DENSE)),
            Rule(f"{w_in}.bias", params(f"{B}/mlp/wi/bias"), Chunk(1, 2, IDENTITY)),
            *linear(f"{L}.mlp.weights_out", f"{B}/mlp/wo"),
        ]
    else:
        mlp = [*linear(f"{L}.mlp.fc1", f"{B}/mlp/wi"), *linear(f"{L}.mlp.fc2", f"{B}/mlp/wo")]
    rules = [
        *vit_embeddings(),
        Rule("embeddings.register_tokens", params("image/registers"), Reshape(lead=1)),
        *_attention("norm1", "norm2"),
        *mlp,
        Rule(f"{L}.layer_scale1.lambda1", params(f"{B}/ls1")),
        Rule(f"{L}.layer_scale2.lambda1", params(f"{B}/ls2")),
        *norm("layernorm", "image/ln_post"),
    ]
    return KeyTable("DINOv2", rules, prefix=prefix, ignore=(r"embeddings\.mask_token",))
