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


def video_forward_flops(cfg: Any) -> int:
    """``models.video.VideoTransformer``: tubelet embedding + joint or factorised encoders."""
    steps = cfg.num_frames // cfg.tubelet
    patches = (cfg.image_size // cfg.patch_size) ** 2
    cls = 1 if cfg.get("pool", "mean") == "cls" else 0
    flops = 2 * steps * patches * cfg.tubelet * cfg.patch_size**2 * 3 * cfg.width
    if cfg.get("attention", "joint") == "joint":
        seq = steps * patches + cls
        flops += encoder_forward_flops(seq, cfg.width, cfg.depth, cfg.mlp_dim)
        if cfg.get("pool") == "map":  # as the ViT's MAP head
            w = cfg.width
            flops += 4 * w * w + 4 * seq * w * w + 4 * seq * w + 4 * w * cfg.mlp_dim
        return flops
    flops += steps * encoder_forward_flops(patches + cls, cfg.width, cfg.depth, cfg.mlp_dim)
    depth = cfg.get("temporal_depth", 1)
    return flops + encoder_forward_flops(steps, cfg.width, depth, cfg.mlp_dim)


def audio_forward_flops(cfg: Any) -> int:
    """``models.audio.AudioTransformer``: patch embedding + encoder (every patch counted)."""
    patches = (cfg.max_frames // cfg.time_patch) * (cfg.num_mels // cfg.freq_patch)
    seq = patches + (1 if cfg.get("pool", "mean") == "cls" else 0)
    flops = 2 * patches * cfg.time_patch * cfg.freq_patch * cfg.width
    return flops + encoder_forward_flops(seq, cfg.width, cfg.depth, cfg.mlp_dim)


def image_forward_flops(cfg: Any) -> int:
    """The image slot's tower: a ViT, or a video / audio tower by ``cfg.kind``."""
    kind = cfg.get("kind", "vit")
    if kind == "video":
        return video_forward_flops(cfg)
    if kind == "audio":
        return audio_forward_flops(cfg)
    if kind != "vit":
        raise KeyError(f"no analytic FLOPs for image kind {kind!r}")
    return vit_forward_flops(cfg)


def text_forward_flops(cfg: Any) -> int:
    flops = encoder_forward_flops(cfg.context_length, cfg.width, cfg.depth, cfg.mlp_dim)
    if cfg.kind == "bert" and cfg.get("pool", "cls") == "cls":
        flops += 2 * cfg.width * cfg.width  # pooler
    return flops


def two_tower_train_flops(model_cfg: Any, batch: int) -> int:
    """Training FLOPs of one step of a ``TwoTower`` on ``batch`` image-text pairs."""
    e = model_cfg.embed_dim
    per_sample = image_forward_flops(model_cfg.image) + text_forward_flops(model_cfg.text)
    per_sample += 2 * e * (model_cfg.image.width + model_cfg.text.width)  # projections
    forward = batch * per_sample + 2 * batch * batch * e  # + the [batch, batch] logits
    return 3 * forward
