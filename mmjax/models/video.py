"""ViViT-style video encoder on the shared transformer, and image-to-video weight inflation.

``VideoTransformer`` cuts a clip ``[batch, frames, H, W, 3]`` into ``t x p x p`` tubelets
(a 3-D convolution with stride = kernel, Arnab et al. 2021, "uniform frame sampling" when
``t = 1``), adds factorised positions (spatial + temporal), and runs either

- ``attention='joint'``: one ``layers.Encoder`` over all ``frames/t * patches`` tokens
  (ViViT model 1, spatio-temporal attention), or
- ``attention='factorised'``: the spatial ``Encoder`` on each time step's patches, a
  per-step pooled token, then a temporal ``Encoder`` (``temporal_depth`` blocks) over the
  time steps (ViViT model 2, factorised encoder).

Pooling and the final norm are the ViT's (``vision.pool_tokens``). Param names follow the
ViT's (``patch_embed``, ``pos_embed``, ``cls_token``, ``encoder``, ``ln_post``, ``map``), so
an image tower's weights load into a video tower through ``config.init_from``;
``inflate_image_params`` turns the 2-D patch kernel into a tubelet kernel (ViViT's
"central frame" or "filter inflation" / averaged initialisation).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any, ClassVar

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from mmjax.models.common import logical_param, patch_embedding
from mmjax.models.kinds import register_image_encoder
from mmjax.models.layers import Encoder, dense_init, layer_norm
from mmjax.models.spec import SpecModule
from mmjax.models.vision import PatchSpec, pool_tokens, posemb_sincos_2d

ATTENTIONS = ("joint", "factorised")
POSEMBS = ("learn", "sincos")
INFLATIONS = ("average", "central")


def posemb_sincos_1d(length: int, width: int, temperature: float = 10_000.0) -> jax.Array:
    """Fixed 1-D sine-cosine positions ``[length, width]`` (Vaswani et al. 2017 layout:
    sines then cosines over ``width // 2`` frequencies)."""
    if width % 2:
        raise ValueError(f"sincos time embeddings need an even width, got {width}")
    omega = 1.0 / temperature ** (jnp.arange(width // 2) / max(width // 2 - 1, 1))
    t = jnp.einsum("m,d->md", jnp.arange(length, dtype=jnp.float32), omega)
    return jnp.concatenate([jnp.sin(t), jnp.cos(t)], axis=1)


@dataclasses.dataclass(frozen=True, kw_only=True)
class VideoSpec(PatchSpec):
    """``VideoTransformer``'s options: the ``PatchSpec`` ones plus the clip length, the
    tubelet's time extent, the attention layout and the temporal positions."""

    num_frames: int
    tubelet: int
    attention: str = "joint"
    temporal_depth: int = 1  # 'factorised': blocks of the temporal encoder
    pool: str = "mean"
    posemb: str = "learn"
    choices: ClassVar[dict[str, tuple]] = {"attention": ATTENTIONS, "posemb": POSEMBS}

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.num_frames % self.tubelet:
            raise ValueError(
                f"video of {self.num_frames} frames is not divisible into tubelets of "
                f"{self.tubelet}"
            )


@register_image_encoder("video")
class VideoTransformer(SpecModule):
    """ViViT: ``videos`` normalized float ``[batch, num_frames, H, W, 3]`` ->
    ``{'tokens': [batch, seq, width], 'pooled': [batch, width]}``.

    ``seq`` is ``steps * patches`` (+1 with a class token) for ``'joint'`` and ``steps``
    (the time steps ``num_frames / tubelet``) for ``'factorised'``, whose tokens are the
    temporal encoder's outputs. ``posemb='learn'`` learns spatial positions (the ViT's
    ``pos_embed``, class token included) plus a temporal ``time_embed`` initialised at 0;
    ``'sincos'`` adds fixed 2-D spatial + 1-D temporal sine-cosine positions to the
    patches. The other fields are the ``VisionTransformer``'s.
    """

    spec: VideoSpec
    takes_mask: ClassVar[bool] = False  # every token real
    grid_tokens: ClassVar[bool] = False

    def grid(self) -> tuple[int, int]:
        """``(time steps, patches per step)``."""
        return self.num_frames // self.tubelet, (self.image_size // self.patch_size) ** 2

    def _encoder(self, depth: int, name: str) -> Encoder:
        return Encoder(self.spec.transformer(depth=depth), name=name)

    def _cls(self, batch: int) -> jax.Array:
        cls = logical_param(
            self, "cls_token", dense_init(self.width**-0.5), (self.width,), ("embed",)
        )
        return jnp.broadcast_to(cls.astype(self.dtype), (batch, 1, self.width))

    @nn.compact
    def __call__(self, videos: jax.Array, *, deterministic: bool = True) -> dict[str, jax.Array]:
        want = (self.num_frames, self.image_size, self.image_size, 3)
        if videos.ndim != 5 or videos.shape[1:] != want:
            raise ValueError(f"videos are {videos.shape}, the model expects [batch, *{want}]")
        steps, patches = self.grid()
        t, p, w = self.tubelet, self.patch_size, self.width
        tubelets = patch_embedding(w, (t, p, p), self.patch_bias, self.dtype)
        x = tubelets(videos.astype(self.dtype))  # [batch, steps, grid, grid, width]
        batch, grid = x.shape[0], x.shape[2]
        x = x.reshape(batch, steps, patches, w)
        cls_slot = 1 if self.pool == "cls" else 0
        if self.posemb == "sincos":
            space = posemb_sincos_2d(grid, grid, w)
            x = x + (space[None] + posemb_sincos_1d(steps, w)[:, None]).astype(x.dtype)[None]
            space_cls = jnp.zeros((w,), x.dtype)
        else:
            pos = logical_param(
                self, "pos_embed", dense_init(w**-0.5), (cls_slot + patches, w), (None, "embed")
            ).astype(x.dtype)
            time = logical_param(
                self, "time_embed", nn.initializers.zeros, (steps, w), (None, "embed")
            ).astype(x.dtype)
            x = x + pos[cls_slot:][None, None] + time[None, :, None]
            space_cls = pos[0] if cls_slot else jnp.zeros((w,), x.dtype)

        def embed(tokens: jax.Array) -> jax.Array:  # [n, seq, width]: class token, norm, drop
            if cls_slot:
                cls = self._cls(tokens.shape[0]) + space_cls
                tokens = jnp.concatenate([cls, tokens], axis=1)
            if self.pre_norm_embeddings:
                tokens = layer_norm(self.ln_eps, self.dtype, name="ln_pre")(tokens)
            return nn.Dropout(self.dropout_rate)(tokens, deterministic=deterministic)

        if self.attention == "joint":
            x = embed(x.reshape(batch, steps * patches, w))
            x = self._encoder(self.depth, "encoder")(x, deterministic=deterministic)
            return pool_tokens(x, self.spec)
        # Factorised encoder: each time step alone through the spatial encoder, one pooled
        # token per step (class token or mean), then the steps through the temporal encoder.
        x = embed(x.reshape(batch * steps, patches, w))
        x = self._encoder(self.depth, "encoder")(x, deterministic=deterministic)
        frames = x[:, 0] if cls_slot else jnp.mean(x, axis=1)
        frames = layer_norm(self.ln_eps, self.dtype, name="ln_space")(frames)
        x = frames.reshape(batch, steps, w)
        if self.posemb == "sincos":
            x = x + posemb_sincos_1d(steps, w).astype(x.dtype)[None]
        else:
            x = (
                x
                + logical_param(
                    self, "temporal_pos_embed", dense_init(w**-0.5), (steps, w), (None, "embed")
                ).astype(x.dtype)[None]
            )
        x = self._encoder(self.temporal_depth, "temporal_encoder")(x, deterministic=deterministic)
        tokens = layer_norm(self.ln_eps, self.dtype, name="ln_post")(x)
        return {"tokens": tokens, "pooled": jnp.mean(tokens, axis=1)}


def inflate_kernel(kernel: np.ndarray, tubelet: int, mode: str = "average") -> np.ndarray:
    """A 2-D patch kernel ``[p, p, c, width]`` -> a tubelet kernel ``[t, p, p, c, width]``.

    ``'average'``: the kernel repeated over time and divided by ``t`` (ViViT's filter
    inflation: a clip of identical frames embeds as the frame does); ``'central'``: the
    kernel at the middle time index (``t // 2``), zeros elsewhere (ViViT's central-frame
    initialisation).
    """
    if mode not in INFLATIONS:
        raise ValueError(f"config.init_from_inflate: unknown {mode!r}; known: {INFLATIONS}")
    kernel = np.asarray(kernel)
    if mode == "average":
        return np.repeat(kernel[None] / tubelet, tubelet, axis=0)
    out = np.zeros((tubelet, *kernel.shape), kernel.dtype)
    out[tubelet // 2] = kernel
    return out


def inflate_image_params(
    source: Mapping[str, Any], target: Mapping[str, Any], mode: str = "average"
) -> dict[str, Any]:
    """``source`` (flat ``{path: array}``) with every 2-D patch kernel that ``target`` holds
    as a tubelet kernel (``.../patch_embed/kernel``: 4-D in the source, 5-D in the target)
    inflated by ``inflate_kernel``; everything else as it is."""
    out = dict(source)
    for path, value in source.items():
        if not path.endswith("patch_embed/kernel") or path not in target:
            continue
        want = tuple(np.shape(target[path]))
        if np.ndim(value) == 4 and len(want) == 5 and want[1:] == tuple(np.shape(value)):
            out[path] = inflate_kernel(np.asarray(value), want[0], mode)
    return out
