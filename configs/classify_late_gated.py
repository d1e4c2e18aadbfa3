"""Image-caption matching on the synthetic shapes with late gated fusion (a GMU over the
pooled image and text vectors) and an MLP head.

    mmjax train --config configs/classify_late_gated.py --workdir runs/match_gated
    mmjax train --config configs/classify_late_gated.py:tiny   # seconds; for tests

Half the captions are replaced by one of another random combination (label 1 = matches,
0 = not; ``--config.task.negatives=one_attribute`` makes every negative differ in exactly
one attribute, which a pooled-vector fusion does not learn from scratch in this budget).
Eval: ``eval/acc`` on the held-out split (chance 0.5). Built on ``vqa_cross_attention.py``
(same encoders and training setup).
"""

import ml_collections

from mmjax import config_base as base
from mmjax.config import Variants

VARIANTS = {"tiny": base.fused_tiny}


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    c = base.fused()
    base.match(c)
    c.model.fusion = dict(kind="gated", width=c.model.fusion.width)
    return Variants(arg, __file__, VARIANTS).apply(c)
