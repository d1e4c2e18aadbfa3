"""Plain image classification on the synthetic shapes: a ViT and a classifier head predict
one attribute of each image (``task.label_field``, default the shape: 4 classes).
``frozen`` freezes the image encoder (only the head trains; set ``init_from`` to a
trained run, e.g. a ``clip_synthetic.py`` workdir, whose ``image/`` tower loads as is).

    mmjax train --config configs/classify_image.py --workdir runs/shape
    mmjax train --config configs/classify_image.py:frozen --workdir runs/shape_probe \\
        --config.init_from=runs/clip
    mmjax train --config configs/classify_image.py:tiny        # seconds; for tests

Eval: ``eval/acc`` on the held-out split (576 images, every combination once; chance
0.25 for shapes). Text-only classification is the same with ``model.image = None`` and a
``model.text``.
"""

import ml_collections

from mmjax import config_base as base
from mmjax.config import Variants


def frozen(c: ml_collections.ConfigDict) -> None:
    """Only the head trains; the image encoder is frozen (set init_from to a run)."""
    # Frozen = not computed: no gradients or optimizer state for image/ (param_rules).
    c.optim.rules = [("image/.*", None), (".*", {})]


VARIANTS = {"tiny": base.fused_tiny, "frozen": frozen}


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    c = base.fused()
    c.task.update(target="label", label_field="shape", num_classes=4)
    c.model.text = None
    c.model.fusion = None
    return Variants(arg, __file__, VARIANTS).apply(c)
