"""VQA on the synthetic shapes with ViLBERT-style co-attention: a text stream and an image
stream, each layer of each cross-attending to the other's previous layer; the head reads
a projection of both streams' first tokens.

    mmjax train --config configs/vqa_co_attention.py --workdir runs/vqa_co
    mmjax train --config configs/vqa_co_attention.py:match   # image-caption matching
    mmjax train --config configs/vqa_co_attention.py:tiny    # seconds; for tests

The task, encoders and training of ``vqa_cross_attention.py`` (``eval/vqa_acc``) with
``fusion.kind='co_attention'`` (about twice the fusion parameters), for 500 steps.
"""

import ml_collections

from mmjax import config_base as base
from mmjax.config import Variants

VARIANTS = {"match": base.match, "tiny": base.fused_tiny}


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    c = base.fused()
    c.model.fusion.kind = "co_attention"
    c.train.update(steps=500, eval_every=250)
    return Variants(arg, __file__, VARIANTS).apply(c)
