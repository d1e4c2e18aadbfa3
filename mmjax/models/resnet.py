"""ResNet (v1.5, Hugging Face ``ResNetModel`` layout) with batch statistics, as an image tower.

Input ``[batch, H, W, channels]`` normalized floats; output ``{'tokens': [batch, h, w, C]``
(the last stage's feature map, NHWC) ``, 'pooled': [batch, C]}`` (global average).
BatchNorm uses its running statistics (``batch_stats`` collection) unless called with
``train_batch_norm=True`` and ``mutable=['batch_stats']``.
"""

from __future__ import annotations

import dataclasses
from typing import ClassVar, TypedDict

import flax.linen as nn
import jax
import jax.numpy as jnp

from mmjax.models.kinds import register_image_encoder
from mmjax.models.layers import Dtype, activation
from mmjax.models.spec import SpecModule, check_choice

LAYER_TYPES = ("basic", "bottleneck")


class ConvBN(nn.Module):
    """Conv (no bias, ``k // 2`` padding) -> BatchNorm -> optional activation."""

    features: int
    kernel: int = 3
    stride: int = 1
    act: str | None = "relu"
    bn_eps: float = 1e-5
    dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        k, pad = self.kernel, self.kernel // 2
        x = nn.Conv(
            self.features,
            (k, k),
            strides=(self.stride, self.stride),
            padding=[(pad, pad), (pad, pad)],
            use_bias=False,
            dtype=self.dtype,
            param_dtype=jnp.float32,
            kernel_init=nn.with_logical_partitioning(
                nn.initializers.kaiming_normal(), (None, None, None, "mlp")
            ),
            name="conv",
        )(x)
        x = nn.BatchNorm(
            use_running_average=not train,
            momentum=0.9,
            epsilon=self.bn_eps,
            dtype=self.dtype,
            param_dtype=jnp.float32,
            scale_init=nn.with_logical_partitioning(nn.initializers.ones, ("mlp",)),
            bias_init=nn.with_logical_partitioning(nn.initializers.zeros, ("mlp",)),
            name="bn",
        )(x)
        return x if self.act is None else activation(self.act)(x)


class ResNetBlock(nn.Module):
    """Basic (two 3x3) or bottleneck (1x1 -> 3x3 -> 1x1, width ``features // 4``) block.

    A projection shortcut (1x1 conv + BN) is used when the stride or width changes.
    ``downsample_in_bottleneck`` puts the stride on the first 1x1 conv (v1) instead of
    the 3x3 (v1.5).
    """

    features: int
    stride: int = 1
    layer_type: str = "bottleneck"
    act: str = "relu"
    downsample_in_bottleneck: bool = False
    dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        residual = x
        if x.shape[-1] != self.features or self.stride != 1:
            residual = ConvBN(
                self.features, 1, self.stride, act=None, dtype=self.dtype, name="shortcut"
            )(x, train)
        if self.layer_type == "basic":
            specs = [(self.features, 3, self.stride, self.act), (self.features, 3, 1, None)]
        else:
            width, s = self.features // 4, self.stride
            first, middle = (s, 1) if self.downsample_in_bottleneck else (1, s)
            specs = [
                (width, 1, first, self.act),
                (width, 3, middle, self.act),
                (self.features, 1, 1, None),
            ]
        for i, (features, kernel, stride, act) in enumerate(specs):
            x = ConvBN(features, kernel, stride, act=act, dtype=self.dtype, name=f"conv_{i}")(
                x, train
            )
        return activation(self.act)(x + residual)


@dataclasses.dataclass(frozen=True, kw_only=True)
class ResNetSpec:
    """``ResNet``'s options (Hugging Face ``ResNetConfig``'s; ResNet-50 by default)."""

    embedding_size: int = 64
    hidden_sizes: tuple[int, ...] = (256, 512, 1024, 2048)
    depths: tuple[int, ...] = (3, 4, 6, 3)
    layer_type: str = "bottleneck"
    act: str = "relu"
    downsample_in_first_stage: bool = False
    downsample_in_bottleneck: bool = False
    dtype: Dtype = jnp.float32

    def __post_init__(self) -> None:
        check_choice("layer_type", self.layer_type, LAYER_TYPES)
        if len(self.hidden_sizes) != len(self.depths):
            raise ValueError(f"hidden_sizes {self.hidden_sizes} and depths {self.depths} differ")


class ResNetModes(TypedDict, total=False):
    """``ResNet.__call__``'s keyword modes, for wrappers that pass them on."""

    deterministic: bool  # no effect (no dropout); the image encoder protocol's
    train_batch_norm: bool  # BatchNorm on batch statistics, updating ``batch_stats``


@register_image_encoder("resnet")
class ResNet(SpecModule):
    """Stem (7x7/2 conv-BN-act, 3x3/2 max pool), stages of blocks, global average pool.

    A ResNet tower runs its BatchNorm on the running statistics it was loaded with."""

    spec: ResNetSpec
    takes_mask: ClassVar[bool] = False  # image encoder protocol: see models/kinds.py
    grid_tokens: ClassVar[bool] = True  # tokens are the feature map [batch, h, w, C]

    @nn.compact
    def __call__(
        self,
        images: jax.Array,
        *,
        deterministic: bool = True,
        train_batch_norm: bool = False,
    ) -> dict[str, jax.Array]:
        del deterministic  # no dropout; BatchNorm mode is train_batch_norm
        x = ConvBN(self.embedding_size, 7, 2, act=self.act, dtype=self.dtype, name="stem")(
            images.astype(self.dtype), train_batch_norm
        )
        x = nn.max_pool(x, (3, 3), strides=(2, 2), padding=((1, 1), (1, 1)))
        for s, (features, depth) in enumerate(zip(self.hidden_sizes, self.depths, strict=True)):
            for i in range(depth):
                stride = 1 if i else (2 if s or self.downsample_in_first_stage else 1)
                x = ResNetBlock(
                    features,
                    stride,
                    self.layer_type,
                    self.act,
                    self.downsample_in_bottleneck,
                    self.dtype,
                    name=f"stage_{s}_block_{i}",
                )(x, train_batch_norm)
        x = nn.with_logical_constraint(x, ("activation_batch", None, None, "activation_mlp"))
        return {"tokens": x, "pooled": jnp.mean(x, axis=(1, 2))}
