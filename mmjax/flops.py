"""Analytic FLOP counts (matmuls only: a multiply-add is 2 FLOPs), for MFU.

Training is counted as 3x the forward pass (the backward pass does two
matmuls for each forward one). Norms, softmax and elementwise ops are left
out, as MaxText and the PaLM paper do; attention scores count the full
``seq x seq`` product even when causal, since the XLA kernel computes it.
"""

from __future__ import annotations

from typing import Any


def encoder_forward_flops(seq: int, width: int, depth: int, mlp_dim: int) -> int:
    """One sequence through ``depth`` transformer blocks."""
    per_layer = seq * (8 * width * width + 4 * width * mlp_dim + 4 * seq * width)
    return depth * per_layer


def vit_forward_flops(cfg: Any) -> int:
    patches = (cfg.image_size // cfg.patch_size) ** 2
    seq = patches + (1 if cfg.pool in ("cls", "cls_mean") else 0) + cfg.get("num_registers", 0)
    flops = 2 * patches * cfg.patch_size**2 * 3 * cfg.width  # patch embedding
    mlp = cfg.mlp_dim * 3 // 2 if cfg.get("mlp_gated") else cfg.mlp_dim  # GLU: 3 matmuls
    flops += encoder_forward_flops(seq, cfg.width, cfg.depth, mlp)
    if cfg.pool == "map":  # one probe query: q/out projections, k/v over seq, scores, MLP
        w = cfg.width
        flops += 4 * w * w + 4 * seq * w * w + 4 * seq * w + 4 * w * cfg.mlp_dim
    return flops


def text_forward_flops(cfg: Any) -> int:
    flops = encoder_forward_flops(cfg.context_length, cfg.width, cfg.depth, cfg.mlp_dim)
    if cfg.kind == "bert" and cfg.get("pool", "cls") == "cls":
        flops += 2 * cfg.width * cfg.width  # pooler
    return flops


def two_tower_train_flops(model_cfg: Any, batch: int) -> int:
    """Training FLOPs of one step of a ``TwoTower`` on ``batch`` image-text pairs."""
    e = model_cfg.embed_dim
    per_sample = vit_forward_flops(model_cfg.image) + text_forward_flops(model_cfg.text)
    per_sample += 2 * e * (model_cfg.image.width + model_cfg.text.width)  # projections
    forward = batch * per_sample + 2 * batch * batch * e  # + the [batch, batch] logits
    return 3 * forward
