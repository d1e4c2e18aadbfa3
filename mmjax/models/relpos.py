"""BEiT's relative position bias: a learned table ``[num_distances, heads]`` indexed by
the 2-D offset between every pair of tokens (plus three entries for the class token).

``relative_position_index(grid)`` is the index ``[1 + h*w, 1 + h*w]`` (token 0 is the
class token): for patches ``p = (y, x)`` and ``q = (y', x')`` it is
``(y - y' + h - 1) * (2w - 1) + (x - x' + w - 1)``; the last three entries are
class->patch, patch->class and class->class (the layout of BEiT's and transformers'
code, so checkpoints load unchanged).
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from mmjax.models.common import logical_param


def num_relative_distances(grid: tuple[int, int]) -> int:
    """Rows of the table for a ``(h, w)`` patch grid: ``(2h - 1)(2w - 1) + 3``."""
    h, w = grid
    return (2 * h - 1) * (2 * w - 1) + 3


def relative_position_index(grid: tuple[int, int]) -> np.ndarray:
    """``[1 + h*w, 1 + h*w]`` int32 table rows for every (query, key) token pair."""
    h, w = grid
    coords = np.stack(np.meshgrid(np.arange(h), np.arange(w), indexing="ij")).reshape(2, -1)
    rel = coords[:, :, None] - coords[:, None, :]  # [2, hw, hw]: query minus key
    index = (rel[0] + h - 1) * (2 * w - 1) + (rel[1] + w - 1)
    n = num_relative_distances(grid)
    out = np.zeros((h * w + 1,) * 2, np.int32)
    out[1:, 1:] = index
    out[0, :] = n - 3  # class token attending to patches
    out[:, 0] = n - 2  # patches attending to the class token
    out[0, 0] = n - 1
    return out


class RelativePositionBias(nn.Module):
    """Learned bias ``[1, heads, 1 + h*w, 1 + h*w]`` to add to attention logits.

    Param ``table`` ``[(2h-1)(2w-1) + 3, heads]`` (zeros at init, as BEiT).
    """

    grid: tuple[int, int]
    num_heads: int

    @nn.compact
    def __call__(self) -> jax.Array:
        table = logical_param(
            self,
            "table",
            nn.initializers.zeros,
            (num_relative_distances(self.grid), self.num_heads),
            (None, "heads"),
        )
        index = relative_position_index(self.grid)
        bias = jnp.take(table, jnp.asarray(index.reshape(-1)), axis=0)
        bias = bias.reshape(*index.shape, self.num_heads)
        return jnp.transpose(bias, (2, 0, 1))[None]
