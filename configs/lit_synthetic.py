"""LiT on the synthetic data: the image tower is locked (loaded from a pretraining run),
the text tower is trained from scratch against it.

    mmjax train --workdir runs/default                     # pretrain a CLIP first
    mmjax train --config configs/lit_synthetic.py --workdir runs/lit \\
        --config.init_from=runs/default

``arg`` takes the ``clip_synthetic`` variants (``tiny``, ``siglip``). The image tower
and its projection are frozen: no gradient, no optimizer state, and XLA drops their
backward pass. The text tower, its projection and the temperature are freshly
initialized (``init_from_dont_load``) and trained.
"""

import ml_collections

from mmjax import config_base as base
from mmjax.config import Variants

VARIANTS = {"siglip": base.siglip, "tiny": base.two_tower_tiny}


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    c = Variants(arg, __file__, VARIANTS).apply(base.two_tower())
    c.optim.rules = [
        ("image/.*|image_proj/.*", None),  # locked image tower
        (".*", {}),  # text tower, text projection, temperature
    ]
    c.init_from = ""  # the pretraining run's workdir, e.g. runs/default
    c.init_from_dont_load = ["text/.*", "text_proj/.*", "logit_scale", "logit_bias"]
    return c
