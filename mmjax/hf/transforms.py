"""Array transforms between Hugging Face (PyTorch layout) and mmjax parameters.

Each transform maps one HF tensor to one mmjax param (``to_mm``, given the mmjax shape)
and back (``to_hf``); a key table pairs keys with one of these. All work on numpy arrays.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Transform:
    """Identity unless a subclass says otherwise; ``to_mm`` ends with a reshape to ``shape``
    (which raises when the element count differs: a mis-shaped key)."""

    def to_mm(self, x: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
        return self._check(x, shape)

    def to_hf(self, x: np.ndarray) -> np.ndarray:
        return x

    @staticmethod
    def _check(x: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
        if tuple(x.shape) != tuple(shape):
            raise ValueError(f"shape {tuple(x.shape)} != {tuple(shape)}")
        return x


@dataclass(frozen=True)
class Dense(Transform):
    """Linear weight ``[out, in]`` <-> Dense kernel ``[in, out]``."""

    def to_mm(self, x: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
        return self._check(x.T, shape)

    def to_hf(self, x: np.ndarray) -> np.ndarray:
        return x.T


@dataclass(frozen=True)
class HeadsIn(Transform):
    """Q/K/V weight ``[heads * kv, embed]`` <-> kernel ``[embed, heads, kv]``."""

    def to_mm(self, x: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
        if x.ndim != 2 or x.shape[1] != shape[0] or x.size != math.prod(shape):
            raise ValueError(f"shape {tuple(x.shape)} does not fit {tuple(shape)}")
        return x.T.reshape(shape)

    def to_hf(self, x: np.ndarray) -> np.ndarray:
        return x.reshape(x.shape[0], -1).T


@dataclass(frozen=True)
class HeadsOut(Transform):
    """Attention output weight ``[embed, heads * kv]`` <-> kernel ``[heads, kv, embed]``."""

    def to_mm(self, x: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
        if x.ndim != 2 or x.shape[0] != shape[-1] or x.size != math.prod(shape):
            raise ValueError(f"shape {tuple(x.shape)} does not fit {tuple(shape)}")
        return x.T.reshape(shape)

    def to_hf(self, x: np.ndarray) -> np.ndarray:
        return x.reshape(-1, x.shape[-1]).T


@dataclass(frozen=True)
class Reshape(Transform):
    """Same elements, other shape: bias ``[heads * kv]`` <-> ``[heads, kv]``; with ``lead``
    leading 1-dims on the HF side (``cls_token [1, 1, D]`` <-> ``[D]``)."""

    lead: int = 0

    def to_mm(self, x: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
        if x.size != math.prod(shape) or (self.lead and x.shape[: self.lead] != (1,) * self.lead):
            raise ValueError(f"shape {tuple(x.shape)} does not fit {tuple(shape)}")
        return x.reshape(shape)

    def to_hf(self, x: np.ndarray) -> np.ndarray:
        return x.reshape((1,) * self.lead + x.shape) if self.lead else x.reshape(-1)


@dataclass(frozen=True)
class Conv(Transform):
    """Conv weight ``[out, in, kh, kw]`` <-> Flax kernel ``[kh, kw, in, out]``."""

    def to_mm(self, x: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
        if x.ndim != 4:
            raise ValueError(f"shape {tuple(x.shape)} is not a conv weight")
        return self._check(np.transpose(x, (2, 3, 1, 0)), shape)

    def to_hf(self, x: np.ndarray) -> np.ndarray:
        return np.transpose(x, (3, 2, 0, 1))


@dataclass(frozen=True)
class Chunk(Transform):
    """Part ``index`` of ``count`` equal parts along axis 0 of a fused HF tensor
    (``in_proj_weight [3 * D, D]`` -> q, k, v), then ``inner``. ``to_hf`` returns this
    part only; the key table concatenates the parts in ``index`` order."""

    index: int = 0
    count: int = 1
    inner: Transform = Transform()

    def to_mm(self, x: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
        if x.shape[0] % self.count:
            raise ValueError(f"shape {tuple(x.shape)} does not split into {self.count} parts")
        return self.inner.to_mm(np.split(x, self.count)[self.index], shape)

    def to_hf(self, x: np.ndarray) -> np.ndarray:
        return self.inner.to_hf(x)


IDENTITY = Transform()
DENSE = Dense()
HEADS_IN = HeadsIn()
HEADS_OUT = HeadsOut()
RESHAPE = Reshape()
CONV = Conv()


def resample_posemb(posemb: np.ndarray, num_prefix: int, shape: tuple[int, ...]) -> np.ndarray:
    """Resizes learned positions ``[prefix + h * w, D]`` to ``shape`` ``[prefix + h' * w', D]``.

    The ``num_prefix`` leading (class-token) rows are kept; the square grid is resized
    bicubically (as big_vision and transformers' ``interpolate_pos_encoding`` do).
    """
    import jax

    grid, new_grid = posemb[num_prefix:], shape[0] - num_prefix
    side, new_side = math.isqrt(len(grid)), math.isqrt(new_grid)
    if side * side != len(grid) or new_side * new_side != new_grid or posemb.shape[1] != shape[1]:
        raise ValueError(f"cannot resample positions {tuple(posemb.shape)} to {tuple(shape)}")
    grid = grid.reshape(side, side, -1)
    resized = jax.image.resize(grid, (new_side, new_side, grid.shape[-1]), method="bicubic")
    return np.concatenate([posemb[:num_prefix], np.asarray(resized).reshape(new_grid, -1)])
