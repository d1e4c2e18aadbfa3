"""Fine-tune only the last k transformer layers of each tower plus the heads.

    mmjax train --config configs/finetune_last_layers.py:k=1 --workdir runs/last1 \\
        --config.init_from=runs/default

``arg``: comma-separated ``k=N`` (default 1) and ``clip_synthetic`` variants (``tiny``,
``siglip``), e.g. ``k=2,tiny``. Trainable: ``TOWER/encoder/layer_i`` for the last k
``i`` of each tower, the final norms / pooling heads, both projections and the
temperature; everything else is frozen (no gradient, no optimizer state).
"""

import ml_collections

from mmjax import config_base as base
from mmjax.config import Variants

VARIANTS = {"siglip": base.siglip, "tiny": base.two_tower_tiny}
HEADS = "image/(ln_post|map)/.*|text/(ln_final|pooler)/.*|(image|text)_proj/.*|logit_(scale|bias)"


def last_layers(depth: int, k: int) -> str:
    """Regex alternation of the last ``k`` layer indices of a ``depth``-layer encoder."""
    return "|".join(str(i) for i in range(max(depth - k, 0), depth))


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    variants = Variants(arg, __file__, VARIANTS, options={"k": 1})
    c = variants.apply(base.two_tower())
    k = variants["k"]
    image, text = last_layers(c.model.image.depth, k), last_layers(c.model.text.depth, k)
    c.optim.rules = [
        (f"image/encoder/layer_({image})/.*", {}),
        (f"text/encoder/layer_({text})/.*", {}),
        (HEADS, {}),
        (".*", None),  # embeddings and lower layers stay frozen
    ]
    c.optim.lr = c.optim.lr / 2
    c.init_from = ""  # the run to fine-tune, e.g. runs/default
    return c
