"""Image-caption matching on the synthetic shapes with late fusion by concatenation: the
pooled image and text vectors are concatenated and mixed by an MLP, then the head.

    mmjax train --config configs/classify_late_concat.py --workdir runs/match_concat
    mmjax train --config configs/classify_late_concat.py:tiny   # seconds; for tests

The same task and training as ``classify_late_gated.py`` (random negatives, ``eval/acc``,
chance 0.5) with ``fusion.kind='late_concat'`` instead of the gated unit.
"""

from pathlib import Path

import ml_collections

from mmjax.config import load_with_options

BASE = Path(__file__).resolve().parent / "vqa_cross_attention.py"


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    c, _ = load_with_options(BASE, ",".join(["match", arg or ""]), {}, "classify_late_concat")
    c.model.fusion = dict(kind="late_concat", width=c.model.fusion.width)
    return c
