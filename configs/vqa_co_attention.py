"""VQA on the synthetic shapes with ViLBERT-style co-attention: a text stream and an image
stream, each layer of each cross-attending to the other's previous layer; the head reads
a projection of both streams' first tokens.

    mmjax train --config configs/vqa_co_attention.py --workdir runs/vqa_co
    mmjax train --config configs/vqa_co_attention.py:match   # image-caption matching
    mmjax train --config configs/vqa_co_attention.py:tiny    # seconds; for tests

The task, encoders and training of ``vqa_cross_attention.py`` (``eval/vqa_acc``) with
``fusion.kind='co_attention'`` (about twice the fusion parameters), for 500 steps.
"""

from pathlib import Path

import ml_collections

from mmjax.config import load_with_options

BASE = Path(__file__).resolve().parent / "vqa_cross_attention.py"


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    c, _ = load_with_options(BASE, arg, {}, "vqa_co_attention")  # 'match' is BASE's variant
    c.model.fusion.kind = "co_attention"
    if "tiny" not in (arg or "").split(","):
        c.train.update(steps=500, eval_every=250)
    return c
