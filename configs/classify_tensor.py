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

from pathlib import Path

import ml_collections

from mmjax.config import load_with_options

BASE = Path(__file__).resolve().parent / "vqa_cross_attention.py"


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    full = "full" in (arg or "").split(",")
    base_arg = ",".join(["match", *(a for a in (arg or "").split(",") if a and a != "full")])
    c, _ = load_with_options(BASE, base_arg, {}, "classify_tensor")
    width = c.model.fusion.width
    if full:
        c.model.fusion = dict(kind="tensor", width=width, hidden=24)
    else:
        c.model.fusion = dict(kind="tensor_lowrank", width=width, hidden=64, rank=8)
    return c
