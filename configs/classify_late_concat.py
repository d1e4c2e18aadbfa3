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

from pathlib import Path

import ml_collections

from mmjax.config import load_with_options

BASE = Path(__file__).resolve().parent / "vqa_cross_attention.py"


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    c, _ = load_with_options(BASE, arg, {}, "classify_late_concat")  # 'match': BASE's variant
    c.model.fusion = dict(kind="late_concat", width=c.model.fusion.width)
    if "tiny" not in (arg or "").split(","):
        c.train.update(steps=500, eval_every=250)
    return c
