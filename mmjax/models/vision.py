"""Vision Transformer image encoder on the shared transformer in ``layers.py``."""

from __future__ import annotations

import dataclasses
from typing import ClassVar

import flax.linen as nn
import jax
import jax.numpy as jnp

from mmjax.models.common import learned_queries, logical_param, patch_embedding
from mmjax.models.kinds import register_image_encoder
from mmjax.models.layers import Dtype, Encoder, Mlp, MultiHeadAttention, dense_init, layer_norm
from mmjax.models.relpos import RelativePositionBias
from mmjax.models.resize import MODES as RESIZE_MODES
from mmjax.models.resize import resize_grid
from mmjax.models.spec import SpecModule, TransformerSpec, check_choice

POOLS = ("cls", "mean", "map", "cls_mean")
POSEMBS = ("learn", "sincos2d", "none")
POSEMB_INTERPS = ("none", *RESIZE_MODES)


def posemb_sincos_2d(h: int, w: int, width: int, temperature: float = 10_000.0) -> jax.Array:
    """Fixed 2-D sine-cosine position embeddings ``[h * w, width]`` (MoCo v3 / big_vision)."""
    if width % 4:
        raise ValueError(f"sincos2d position embeddings need width % 4 == 0, got {width}")
    y, x = jnp.mgrid[:h, :w]
    omega = 1.0 / temperature ** (jnp.arange(width // 4) / max(width // 4 - 1, 1))
    y = jnp.einsum("m,d->md", y.reshape(-1).astype(jnp.float32), omega)
    x = jnp.einsum("m,d->md", x.reshape(-1).astype(jnp.float32), omega)
    return jnp.concatenate([jnp.sin(x), jnp.cos(x), jnp.sin(y), jnp.cos(y)], axis=1)


class MAPHead(nn.Module):
    """Multihead attention pooling (SigLIP): a learned probe attends over the tokens.

    ``[batch, seq, embed]`` -> ``[batch, embed]``.
    """

    num_heads: int
    mlp_dim: int
    act: str = "gelu_tanh"
    ln_eps: float = 1e-6
    dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        init = nn.initializers.xavier_uniform()
        probe = learned_queries(self, "probe", init, (1, 1, x.shape[-1]), len(x))
        y = MultiHeadAttention(self.num_heads, dtype=self.dtype, name="attn")(probe, x)
        y = y + Mlp(self.mlp_dim, act=self.act, dtype=self.dtype, name="mlp")(
            layer_norm(self.ln_eps, self.dtype, name="ln")(y)
        )
        return y[:, 0]


@dataclasses.dataclass(frozen=True, kw_only=True)
class PatchSpec(TransformerSpec):
    """What image-like towers cut into patches share (``VisionTransformer``,
    ``video.VideoTransformer``): sizes, pooling and the final norm (``pool_tokens``).
    ``pre_norm_embeddings``: a LayerNorm on the embeddings before the encoder (CLIP's
    ``pre_layrnorm``); ``norm_tokens`` (``pool='cls'``): every token normalized (HF ViT)
    rather than only the pooled one (CLIP); ``map_act``: the MAP head's MLP activation."""

    image_size: int
    patch_size: int
    width: int
    pool: str = "cls"
    pre_norm_embeddings: bool = False
    patch_bias: bool = True
    norm_tokens: bool = False
    map_act: str = "gelu_tanh"

    def __post_init__(self) -> None:
        super().__post_init__()
        check_choice("pool", self.pool, POOLS)
        if self.image_size % self.patch_size:
            raise ValueError(
                f"image_size {self.image_size} is not divisible by patch_size {self.patch_size}"
            )


@dataclasses.dataclass(frozen=True, kw_only=True)
class ViTSpec(PatchSpec):
    """``VisionTransformer``'s options (see its docstring for the BEiT / DINOv2 ones)."""

    posemb: str = "learn"
    rel_pos_layer: bool = False
    rel_pos_shared: bool = False
    num_registers: int = 0
    posemb_interp: str = "none"  # 'none' | 'bicubic' | 'bicubic_aa'

    def __post_init__(self) -> None:
        super().__post_init__()
        check_choice("posemb", self.posemb, POSEMBS)
        check_choice("posemb_interp", self.posemb_interp, POSEMB_INTERPS)
        has_cls = self.pool in ("cls", "cls_mean")
        if (self.rel_pos_layer or self.rel_pos_shared) and (not has_cls or self.num_registers):
            raise ValueError("relative position bias needs a class token and no registers")


@register_image_encoder("vit")
class VisionTransformer(SpecModule):
    """ViT: patch embedding, learned positions, transformer, pooling.

    Input ``images`` is ``[batch, height, width, channels]`` (already normalized
    floats). Returns ``{'tokens': [batch, seq, width], 'pooled': [batch, width]}``
    where ``seq`` is the number of patches (+1 with a class token).
    ``posemb='learn'`` learns positions for every token, class token included
    (CLIP's layout); ``'sincos2d'`` adds fixed 2-D sine-cosine positions to the
    patches only (big_vision's), which a model uses from the first step.
    ``pre_norm_embeddings`` applies a LayerNorm to the embeddings before the
    encoder (CLIP's ``pre_layrnorm``). With ``pool='cls'``, ``norm_tokens=True``
    applies the final LayerNorm to every token and pools the normalized class token
    (Hugging Face ViT's layout) instead of normalizing only the pooled token (CLIP's).
    ``patch_bias`` / ``qkv_bias`` switch the patch-embedding and query/key/value biases;
    ``map_act`` is the MAP head's MLP activation.

    BEiT / DINOv2 options (defaults leave the plain ViT unchanged): ``pool='cls_mean'``
    keeps a class token but pools the LayerNorm of the mean patch token, tokens left
    unnormalized (BEiT's ``use_mean_pooling``); ``posemb='none'`` has no absolute
    positions; ``rel_pos_layer`` / ``rel_pos_shared`` add a learned relative position
    bias to the attention logits in every layer, per layer (``encoder/layer_i/rel_pos_bias``)
    or one for all layers (``rel_pos_bias``); ``layer_scale`` (init value), ``mlp_gated``
    (SwiGLU with ``act='silu'``) and ``key_bias`` go to every block;
    ``num_registers`` learned register tokens sit after the class token (no positions);
    ``posemb_interp`` accepts images of other sizes and resizes the learned patch
    positions as PyTorch does (``'bicubic'``: transformers' DINOv2, ``'bicubic_aa'``:
    antialiased, DINOv2 with registers). Sequence: ``[cls, registers, patches]``.
    """

    spec: ViTSpec
    takes_mask: ClassVar[bool] = False  # image encoder protocol: see models/kinds.py
    grid_tokens: ClassVar[bool] = False

    def grid(self) -> tuple[int, int]:
        """The checkpoint's patch grid ``(h, w)`` (positions and relative biases are sized
        for it)."""
        side = self.image_size // self.patch_size
        return side, side

    def num_patches(self) -> int:
        return (self.image_size // self.patch_size) ** 2

    @nn.compact
    def __call__(self, images: jax.Array, *, deterministic: bool = True) -> dict[str, jax.Array]:
        any_size = self.posemb_interp != "none" and not (self.rel_pos_layer or self.rel_pos_shared)
        if not any_size and images.shape[1:3] != (self.image_size, self.image_size):
            raise ValueError(
                f"images are {images.shape[1:3]}, the model expects "
                f"{(self.image_size, self.image_size)}"
            )
        p = self.patch_size
        embed = patch_embedding(self.width, (p, p), self.patch_bias, self.dtype)
        x = embed(images.astype(self.dtype))
        batch, grid_h, grid_w = x.shape[:3]
        x = x.reshape(batch, -1, self.width)  # [batch, patches, width]
        if self.posemb == "sincos2d":
            x = x + posemb_sincos_2d(grid_h, grid_w, self.width).astype(x.dtype)[None]

        has_cls = self.pool in ("cls", "cls_mean")
        if has_cls:
            cls = logical_param(
                self, "cls_token", dense_init(self.width**-0.5), (self.width,), ("embed",)
            )
            cls = jnp.broadcast_to(cls.astype(x.dtype), (batch, 1, self.width))
            x = jnp.concatenate([cls, x], axis=1)
        if self.posemb == "learn":
            x = x + self._learned_posemb(int(has_cls), (grid_h, grid_w)).astype(x.dtype)[None]
        if self.num_registers:
            reg = logical_param(
                self,
                "registers",
                nn.initializers.zeros,
                (self.num_registers, self.width),
                (None, "embed"),
            )
            reg = jnp.broadcast_to(reg.astype(x.dtype), (batch, self.num_registers, self.width))
            x = jnp.concatenate([x[:, : int(has_cls)], reg, x[:, int(has_cls) :]], axis=1)
        if self.pre_norm_embeddings:
            x = layer_norm(self.ln_eps, self.dtype, name="ln_pre")(x)
        x = nn.Dropout(self.dropout_rate)(x, deterministic=deterministic)
        bias = None
        if self.rel_pos_shared:
            bias = RelativePositionBias(self.grid(), self.num_heads, name="rel_pos_bias")()

        x = Encoder(
            self.spec.transformer(),
            rel_pos_grid=self.grid() if self.rel_pos_layer else None,
            name="encoder",
        )(x, deterministic=deterministic, bias=bias)
        return pool_tokens(x, self.spec, num_registers=self.num_registers)

    def _learned_posemb(self, prefix: int, grid: tuple[int, int]) -> jax.Array:
        """``pos_embed`` ``[prefix + h * w, width]`` of the checkpoint's grid, its patch rows
        resized to ``grid`` when the images have another size (``posemb_interp``)."""
        native = self.grid()
        pos = logical_param(
            self,
            "pos_embed",
            dense_init(self.width**-0.5),
            (prefix + native[0] * native[1], self.width),
            (None, "embed"),
        )
        if grid == native:
            return pos
        patches = resize_grid(pos[prefix:].reshape(*native, self.width), grid, self.posemb_interp)
        return jnp.concatenate([pos[:prefix], patches.reshape(-1, self.width)])


def pool_tokens(x: jax.Array, spec: PatchSpec, num_registers: int = 0) -> dict[str, jax.Array]:
    """The ViT's final norm and pooling (``spec.pool``), called inside a compact
    ``__call__`` (its modules, ``ln_post`` / ``map``, belong to that caller):
    ``[batch, seq, width]`` (class token first when ``pool='cls'`` / ``'cls_mean'``, then
    ``num_registers`` register tokens) -> ``{'tokens': [batch, seq, width], 'pooled':
    [batch, width]}``."""
    pool, norm_tokens, ln_eps, dtype = spec.pool, spec.norm_tokens, spec.ln_eps, spec.dtype
    if pool == "cls" and norm_tokens:
        tokens = layer_norm(ln_eps, dtype, name="ln_post")(x)
        pooled = tokens[:, 0]
    elif pool == "cls":
        # CLIP normalizes only the pooled class token; tokens stay raw.
        pooled = layer_norm(ln_eps, dtype, name="ln_post")(x[:, 0])
        tokens = x
    elif pool == "cls_mean":  # BEiT: norm of the mean patch token
        pooled = layer_norm(ln_eps, dtype, name="ln_post")(
            jnp.mean(x[:, 1 + num_registers :], axis=1)
        )
        tokens = x
    else:
        tokens = layer_norm(ln_eps, dtype, name="ln_post")(x)
        if pool == "mean":
            pooled = jnp.mean(tokens, axis=1)
        else:
            pooled = MAPHead(
                spec.num_heads,
                spec.mlp_dim,
                act=spec.map_act,
                ln_eps=ln_eps,
                dtype=dtype,
                name="map",
            )(tokens)
    return {"tokens": tokens, "pooled": pooled}
