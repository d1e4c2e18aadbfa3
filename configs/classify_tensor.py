"""Image-caption matching on the synthetic shapes with tensor fusion of the pooled image
and text vectors: low-rank multimodal fusion (LMF) by default, the full outer-product
Tensor Fusion Network with the ``full`` variant.

    mmjax train --config configs/classify_tensor.py --workdir runs/match_tensor
    mmjax train --config configs/classify_tensor.py:full       # full tensor (TFN)
    mmjax train --config configs/classify_tensor.py:tiny       # seconds; for tests

Task as in ``classify_late_gated.py`` (random negatives, ``eval/acc``, chance 0.5).
``fusion.hidden`` is each modality's projection before the product; the full tensor has
``(hidden + 1) ** 2`` features.
"""

import ml_collections

from mmjax import config_base as base
from mmjax.config import Variants


def full(c: ml_collections.ConfigDict) -> None:
    """The full outer-product Tensor Fusion Network instead of the low-rank one."""
    c.model.fusion = dict(kind="tensor", width=c.model.fusion.width, hidden=24)


VARIANTS = {"full": full, "tiny": base.fused_tiny}


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    c = base.fused()
    base.match(c)
    c.model.fusion = dict(kind="tensor_lowrank", width=c.model.fusion.width, hidden=64, rank=8)
    return Variants(arg, __file__, VARIANTS).apply(c)
