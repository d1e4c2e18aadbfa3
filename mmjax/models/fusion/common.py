"""What every fusion kind shares: the ``Tokens`` it receives per modality, its spec bases
and the input checks.

Every fusion module is called the same way (``models/kinds.py``)::

    fused = fusion(modalities, deterministic=...)   # dict[str, Tokens] -> dict

``modalities`` holds the present modalities in fusion order (``text``, ``image``, then
the feature modalities sorted by name), each as ``Tokens``; the result has at least
``'pooled'`` ``[batch, width]``. Masks are bool ``[batch, seq]`` with True = real token.
Padding never influences an output: padded keys are masked out of every attention,
padded inputs are replaced by zeros and padded positions of every returned token
sequence are zero.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar, TypedDict

import jax
import jax.numpy as jnp

from mmjax.models.spec import TransformerSpec

Array = jax.Array

# Projections into the fusion width: input features replicated, output on ``embed``.
INTO_WIDTH = (None, "embed")


class Tokens(TypedDict, total=False):
    """One modality's encoder output as a fusion module reads it."""

    tokens: Array  # [batch, seq, dim], padded positions 0
    mask: Array  # bool [batch, seq], True = real token
    pooled: Array  # [batch, dim]


# What every fusion module takes and returns:
# ``def __call__(self, modalities: Modalities, *, deterministic: bool = True) -> Fused``.
Modalities = Mapping[str, Tokens]
Fused = dict[str, Array]


class FusionChecks:
    """Mixin of every fusion spec: which modalities the kind needs (``needs``; at least two
    always) and whether it returns fused text tokens (``token_level``)."""

    needs: ClassVar[tuple[str, ...]] = ()
    token_level: ClassVar[bool] = False

    def check_modalities(self, names: Sequence[str]) -> None:
        """``ValueError`` unless ``names`` (the present modalities) suit this kind."""
        if len(names) < 2:
            raise ValueError(
                f"fusion needs at least two modalities (config.model.image / text / "
                f"features); got {list(names)}"
            )
        missing = [m for m in self.needs if m not in names]
        if missing:
            needed = ", ".join(f"config.model.{m}" for m in missing)
            raise ValueError(f"this fusion kind needs {needed}")


@dataclasses.dataclass(frozen=True, kw_only=True)
class VectorFusionSpec(FusionChecks):
    """Fusion of pooled vectors into ``width`` features."""

    width: int
    act: str = "gelu"
    dtype: Any = jnp.float32


@dataclasses.dataclass(frozen=True, kw_only=True)
class TransformerFusionSpec(FusionChecks, TransformerSpec):
    """Token-level fusion by a transformer of ``width`` (``mlp_dim=0``: ``4 * width``)."""

    width: int
    depth: int = 2
    num_heads: int = 4
    mlp_dim: int = 0
    token_level: ClassVar[bool] = True

    def __post_init__(self) -> None:
        if not self.mlp_dim:
            object.__setattr__(self, "mlp_dim", 4 * self.width)
        super().__post_init__()


def first_real(tokens: Array, mask: Array) -> Array:
    """The first real token of each row: ``[batch, seq, dim]`` -> ``[batch, dim]``."""
    idx = jnp.argmax(mask, axis=1)
    return jnp.take_along_axis(tokens, idx[:, None, None], axis=1)[:, 0]


def pooled_of(name: str, modalities: Modalities) -> list[Array]:
    """The modalities' ``pooled`` vectors in order, checked: ``[batch, dim]`` each, one
    batch size."""
    pooled = [m["pooled"] for m in modalities.values()]
    if not pooled:
        raise ValueError(f"{name}: no modalities given")
    for i, p in enumerate(pooled):
        if p.ndim != 2 or p.shape[0] != pooled[0].shape[0]:
            raise ValueError(
                f"{name}: pooled[{i}] must be [batch, dim] with batch {pooled[0].shape[0]}, "
                f"got {p.shape}"
            )
    return pooled
