"""Two-tower contrastive models (CLIP / SigLIP / LiT) built from the encoders.

``TwoTower`` holds an image encoder under ``image/`` and a text encoder under
``text/`` in the param tree (so freezing rules such as ``image/.*`` read
naturally), linear projections to a shared ``embed_dim`` and a learnable
temperature (and, for SigLIP, a bias).
"""

from __future__ import annotations

import math
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from mmjax.models.layers import kernel_init
from mmjax.models.media import MEDIA_KINDS, build_media_encoder
from mmjax.models.resnet import ResNet
from mmjax.models.text import BertEncoder, CLIPTextTransformer
from mmjax.models.vision import VisionTransformer

BEIT_DINOV2_FIELDS = (
    "key_bias",
    "layer_scale",
    "mlp_gated",
    "rel_pos_layer",
    "rel_pos_shared",
    "num_registers",
    "posemb_interp",
)
DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16, "float16": jnp.float16}


def l2_normalize(x: jax.Array, eps: float = 1e-6) -> jax.Array:
    """Normalizes the last axis in fp32 (``[..., dim]``)."""
    x = x.astype(jnp.float32)
    return x * jax.lax.rsqrt(jnp.sum(x * x, axis=-1, keepdims=True) + eps)


class TwoTower(nn.Module):
    """Image and text towers with projections and a learnable temperature.

    ``encode_image``: ``[batch, H, W, C]`` -> ``[batch, embed_dim]``, projected and
    not normalized (what transformers' ``get_image_features`` returns).
    ``encode_text``: ``[batch, seq]`` tokens (+ padding mask) -> ``[batch, embed_dim]``,
    likewise. ``__call__`` returns ``{'image', 'text', 'logit_scale', 'logit_bias'}``
    with L2-normalized fp32 embeddings;
    ``logit_scale`` is the log temperature (the loss exponentiates it) and
    ``logit_bias`` is 0 unless ``logit_bias_init`` is set (SigLIP).
    ``image_projection=False`` uses the image tower's pooled output as the embedding
    (SigLIP has no image projection); ``proj_bias`` adds biases to the projections
    (SigLIP's text head).
    """

    image: nn.Module
    text: nn.Module
    embed_dim: int
    logit_scale_init: float = math.log(1 / 0.07)
    logit_bias_init: float | None = None
    image_projection: bool = True
    proj_bias: bool = False
    dtype: Any = jnp.float32

    def setup(self) -> None:
        def proj(name: str) -> nn.Dense:
            return nn.Dense(
                self.embed_dim,
                use_bias=self.proj_bias,
                dtype=self.dtype,
                param_dtype=jnp.float32,
                kernel_init=nn.with_logical_partitioning(kernel_init(), ("embed", "proj")),
                bias_init=nn.with_logical_partitioning(nn.initializers.zeros, ("proj",)),
                name=name,
            )

        self.image_proj = proj("image_proj") if self.image_projection else None
        self.text_proj = proj("text_proj")
        self.logit_scale = self.param(
            "logit_scale",
            nn.with_logical_partitioning(nn.initializers.constant(self.logit_scale_init), ()),
            (),
            jnp.float32,
        )
        if self.logit_bias_init is not None:
            self.logit_bias = self.param(
                "logit_bias",
                nn.with_logical_partitioning(nn.initializers.constant(self.logit_bias_init), ()),
                (),
                jnp.float32,
            )

    def encode_image(
        self, images: jax.Array, image_mask: jax.Array | None = None, *, deterministic: bool = True
    ) -> jax.Array:
        # image_mask: an audio tower's frame mask [batch, frames] (padded clips)
        masked = () if image_mask is None else (image_mask,)
        pooled = self.image(images, *masked, deterministic=deterministic)["pooled"]
        return pooled if self.image_proj is None else self.image_proj(pooled)

    def encode_text(
        self,
        tokens: jax.Array,
        padding_mask: jax.Array | None = None,
        *,
        deterministic: bool = True,
    ) -> jax.Array:
        pooled = self.text(tokens, padding_mask, deterministic=deterministic)["pooled"]
        return self.text_proj(pooled)

    def __call__(
        self,
        images: jax.Array,
        tokens: jax.Array,
        padding_mask: jax.Array | None = None,
        *,
        image_mask: jax.Array | None = None,
        deterministic: bool = True,
    ) -> dict[str, jax.Array]:
        bias = self.logit_bias if self.logit_bias_init is not None else jnp.zeros((), jnp.float32)
        image = self.encode_image(images, image_mask, deterministic=deterministic)
        return {
            "image": l2_normalize(image),
            "text": l2_normalize(
                self.encode_text(tokens, padding_mask, deterministic=deterministic)
            ),
            "logit_scale": self.logit_scale,
            "logit_bias": bias,
        }


def build_image_encoder(
    cfg: Any, dtype: Any, attention_impl: str | None, **memory: Any
) -> nn.Module:
    """ViT (or, with ``kind='resnet'``, a ResNet) from ``config.model.image``.

    ``memory``: ``remat`` / ``scan_layers`` of the ViT's ``layers.Encoder``.

    A ResNet tower runs its BatchNorm on the running statistics it was loaded with.
    """
    if cfg.get("kind", "vit") in MEDIA_KINDS:  # video / audio towers (video.py, audio.py)
        return build_media_encoder(cfg, dtype, attention_impl, **memory)
    if cfg.get("kind", "vit") == "resnet":
        return ResNet(
            embedding_size=cfg.embedding_size,
            hidden_sizes=tuple(cfg.hidden_sizes),
            depths=tuple(cfg.depths),
            layer_type=cfg.get("layer_type", "bottleneck"),
            act=cfg.get("act", "relu"),
            downsample_in_first_stage=cfg.get("downsample_in_first_stage", False),
            downsample_in_bottleneck=cfg.get("downsample_in_bottleneck", False),
            dtype=dtype,
        )
    return VisionTransformer(
        image_size=cfg.image_size,
        patch_size=cfg.patch_size,
        width=cfg.width,
        depth=cfg.depth,
        num_heads=cfg.num_heads,
        mlp_dim=cfg.mlp_dim,
        pool=cfg.pool,
        posemb=cfg.get("posemb", "learn"),
        act=cfg.act,
        ln_eps=cfg.get("ln_eps", 1e-5),
        pre_norm_embeddings=cfg.get("pre_norm_embeddings", False),
        patch_bias=cfg.get("patch_bias", True),
        qkv_bias=cfg.get("qkv_bias", True),
        norm_tokens=cfg.get("norm_tokens", False),
        map_act=cfg.get("map_act", "gelu_tanh"),
        dropout_rate=cfg.get("dropout_rate", 0.0),
        dtype=dtype,
        attention_impl=attention_impl,
        **{k: cfg[k] for k in BEIT_DINOV2_FIELDS if k in cfg},  # see VisionTransformer
        **memory,
    )


def build_text_encoder(
    cfg: Any, dtype: Any, attention_impl: str | None, **memory: Any
) -> nn.Module:
    """CLIP-style or BERT-style text encoder from ``config.model.text`` (``kind``);
    ``memory``: ``remat`` / ``scan_layers`` of its ``layers.Encoder``."""
    common = dict(
        vocab_size=cfg.vocab_size,
        width=cfg.width,
        depth=cfg.depth,
        num_heads=cfg.num_heads,
        mlp_dim=cfg.mlp_dim,
        act=cfg.act,
        dropout_rate=cfg.get("dropout_rate", 0.0),
        dtype=dtype,
        attention_impl=attention_impl,
        **memory,
    )
    if cfg.get("ln_eps") is not None:
        common["ln_eps"] = cfg.ln_eps
    if cfg.kind == "clip":
        return CLIPTextTransformer(
            context_length=cfg.context_length,
            eos_id=cfg.eos_id,
            causal=cfg.get("causal", True),
            pool=cfg.get("pool", "eos"),
            use_padding_mask=cfg.get("use_padding_mask", True),
            **common,
        )
    if cfg.kind == "bert":
        return BertEncoder(
            max_positions=cfg.context_length,
            pool=cfg.get("pool", "cls"),
            type_vocab_size=cfg.get("type_vocab_size", 2),
            **common,
        )
    raise ValueError(f"config.model.text.kind: unknown {cfg.kind!r}; known: 'clip', 'bert'")


def dtype_from_name(name: str) -> Any:
    try:
        return DTYPES[name]
    except KeyError:
        raise ValueError(f"config.model.dtype: unknown {name!r}; known: {sorted(DTYPES)}") from None


def build_two_tower(cfg: Any) -> TwoTower:
    """``TwoTower`` from ``config.model`` (see ``configs/clip_synthetic.py``)."""
    dtype = dtype_from_name(cfg.dtype)
    impl = cfg.get("attention_impl") or None
    memory = dict(remat=cfg.get("remat", "none"), scan_layers=bool(cfg.get("scan_layers", False)))
    return TwoTower(
        image=build_image_encoder(cfg.image, dtype, impl, **memory),
        text=build_text_encoder(cfg.text, dtype, impl, **memory),
        embed_dim=cfg.embed_dim,
        logit_scale_init=cfg.logit_scale_init,
        logit_bias_init=cfg.get("logit_bias_init"),
        image_projection=cfg.get("image_projection", True),
        proj_bias=cfg.get("proj_bias", False),
        dtype=dtype,
    )
