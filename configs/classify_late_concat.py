"""VQA on the synthetic shapes with late fusion by concatenation: the pooled image and
question vectors are concatenated and mixed by an MLP, then the answer head.

    mmjax train --config configs/classify_late_concat.py --workdir runs/vqa_concat
    mmjax train --config configs/classify_late_concat.py:match   # image-caption matching
    mmjax train --config configs/classify_late_concat.py:tiny    # seconds; for tests

VQA as in ``vqa_cross_attention.py`` (``eval/vqa_acc``), 500 steps. Matching (``match``, as
in ``classify_late_gated.py``) stays at chance with concatenation from scratch in this
budget (measured: eval/acc 0.507 after 500 steps), like graph fusion: both mix the
modalities additively, while the GMU and tensor fusion have multiplicative terms.
"""

import ml_collections

from mmjax import config_base as base
from mmjax.config import Variants

VARIANTS = {"match": base.match, "tiny": base.fused_tiny}


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    c = base.fused()
    c.model.fusion = dict(kind="late_concat", width=c.model.fusion.width)
    c.train.update(steps=500, eval_every=250)
    return Variants(arg, __file__, VARIANTS).apply(c)
