"""The learned temperature's cap, applied to the parameter after each optimizer update.

CLIP (and open_clip's ``train.py``: ``model.logit_scale.clamp_(0, math.log(100))`` right
after ``optimizer.step()``) keeps the log temperature ``logit_scale`` in ``[0, log 100]``
by clamping the *parameter*; the forward pass uses it unclamped. Clamping in the forward
instead (``exp(minimum(s, log 100))``) zeroes the gradient once ``s`` passes the cap, and
since the temperature has no weight decay it then never comes back.
"""

from __future__ import annotations

import math
from typing import Any

import jax
import jax.numpy as jnp

MAX_LOGIT_SCALE = math.log(100.0)
"""CLIP's cap on the log temperature: the logits are at most 100 x cosine similarity."""


def _name(entry: Any) -> str:
    return str(getattr(entry, "key", getattr(entry, "name", entry)))


def clamp_logit_scale(params: Any, high: float = MAX_LOGIT_SCALE, low: float = 0.0) -> Any:
    """``params`` with every leaf named ``logit_scale`` (a scalar anywhere in the tree: the
    two-tower, CoCa and ITM models all call it that) clipped into ``[low, high]``; every
    other leaf is returned as it is."""

    def clamp(path: tuple, x: Any) -> Any:
        if path and _name(path[-1]) == "logit_scale":
            return jnp.clip(x, low, high).astype(x.dtype)
        return x

    return jax.tree_util.tree_map_with_path(clamp, params)
