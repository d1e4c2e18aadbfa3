"""AST-style audio encoder (Gong et al. 2021) on the shared transformer.

A log-mel spectrogram ``[batch, frames, mels]`` (computed in the input pipeline:
``mmjax.data.audio``) is cut into non-overlapping ``time_patch x freq_patch`` patches
(a 2-D convolution with stride = kernel over ``[frames, mels, 1]``), gets positions over
the (time, frequency) patch grid, runs through ``layers.Encoder`` and is pooled as the
ViT is. Clips shorter than ``max_frames`` come padded with a frame mask: padded frames
are zeroed, and patches whose first frame is padding are masked out of attention,
pooling and the returned tokens.
"""

from __future__ import annotations

import dataclasses
from typing import ClassVar

import flax.linen as nn
import jax
import jax.numpy as jnp

from mmjax.models.common import key_mask, logical_param, masked_mean, patch_embedding, zero_padding
from mmjax.models.kinds import register_image_encoder
from mmjax.models.layers import Encoder, dense_init, layer_norm
from mmjax.models.spec import SpecModule, TransformerSpec
from mmjax.models.vision import posemb_sincos_2d

POOLS = ("cls", "mean")
POSEMBS = ("learn", "sincos2d")


def patch_mask(frame_mask: jax.Array, time_patch: int, freq_patches: int) -> jax.Array:
    """Frame mask bool ``[batch, frames]`` -> patch mask ``[batch, time_patches *
    freq_patches]`` (time-major, as the patches are laid out): a patch is real when its
    first frame is."""
    real = frame_mask[:, ::time_patch]
    return jnp.repeat(real, freq_patches, axis=1)


@dataclasses.dataclass(frozen=True, kw_only=True)
class AudioSpec(TransformerSpec):
    """``AudioTransformer``'s options: spectrogram size, patch size, width, pooling and
    positions."""

    max_frames: int
    num_mels: int
    time_patch: int
    freq_patch: int
    width: int
    pool: str = "mean"
    posemb: str = "learn"
    choices: ClassVar[dict[str, tuple]] = {"pool": POOLS, "posemb": POSEMBS}

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.max_frames % self.time_patch or self.num_mels % self.freq_patch:
            raise ValueError(
                f"a {self.max_frames} x {self.num_mels} spectrogram is not divisible into "
                f"{self.time_patch} x {self.freq_patch} patches"
            )


@register_image_encoder("audio")
class AudioTransformer(SpecModule):
    """``spectrograms`` float ``[batch, max_frames, num_mels]`` (+ bool ``mask``
    ``[batch, max_frames]``, all real when ``None``) -> ``{'tokens': [batch, seq, width],
    'pooled': [batch, width], 'mask': bool [batch, seq]}`` with ``seq`` the patches
    (+1 for the class token, always real). Padded tokens are 0."""

    spec: AudioSpec
    takes_mask: ClassVar[bool] = True  # a frame mask [batch, max_frames]
    grid_tokens: ClassVar[bool] = False

    def grid(self) -> tuple[int, int]:
        """``(time patches, frequency patches)``."""
        return self.max_frames // self.time_patch, self.num_mels // self.freq_patch

    @nn.compact
    def __call__(
        self, spectrograms: jax.Array, mask: jax.Array | None = None, *, deterministic: bool = True
    ) -> dict[str, jax.Array]:
        want = (self.max_frames, self.num_mels)
        if spectrograms.ndim != 3 or spectrograms.shape[1:] != want:
            raise ValueError(
                f"spectrograms are {spectrograms.shape}, the model expects [batch, *{want}]"
            )
        batch = spectrograms.shape[0]
        if mask is None:
            mask = jnp.ones((batch, self.max_frames), jnp.bool_)
        steps, bands = self.grid()
        w = self.width
        # padded frames zeroed: a last, partial patch sees zeros whatever the padding
        patches = (self.time_patch, self.freq_patch)
        x = patch_embedding(w, patches, True, self.dtype)(
            jnp.where(mask[..., None], spectrograms, 0).astype(self.dtype)[..., None]
        )  # [batch, steps, bands, width]
        x = x.reshape(batch, steps * bands, w)
        tokens_mask = patch_mask(mask.astype(jnp.bool_), self.time_patch, bands)
        if self.posemb == "sincos2d":
            x = x + posemb_sincos_2d(steps, bands, w).astype(x.dtype)[None]
        else:
            x = (
                x
                + logical_param(
                    self, "pos_embed", dense_init(w**-0.5), (steps * bands, w), (None, "embed")
                ).astype(x.dtype)[None]
            )
        if self.pool == "cls":
            cls = logical_param(self, "cls_token", dense_init(w**-0.5), (w,), ("embed",))
            x = jnp.concatenate([jnp.broadcast_to(cls.astype(x.dtype), (batch, 1, w)), x], 1)
            tokens_mask = jnp.concatenate([jnp.ones((batch, 1), jnp.bool_), tokens_mask], 1)
        x = zero_padding(x, tokens_mask)
        x = nn.Dropout(self.dropout_rate)(x, deterministic=deterministic)
        x = Encoder(self.spec.transformer(), name="encoder")(
            x, mask=key_mask(tokens_mask), deterministic=deterministic
        )
        tokens = zero_padding(layer_norm(self.ln_eps, self.dtype, name="ln_post")(x), tokens_mask)
        pooled = tokens[:, 0] if self.pool == "cls" else masked_mean(tokens, tokens_mask)
        return {"tokens": tokens, "pooled": pooled, "mask": tokens_mask}
