"""Fine-tune everything with layer-wise learning-rate decay (LLRD) and an EMA for eval.

    mmjax train --config configs/finetune_llrd.py:llrd=0.7 --workdir runs/llrd \\
        --config.init_from=runs/default

``arg``: comma-separated ``llrd=F`` (default 0.75) and ``clip_synthetic`` variants
(``tiny``, ``siglip``). Per tower with L layers, layer i trains at ``lr * llrd**(L - i)``,
the embeddings at ``lr * llrd**(L + 1)`` and the heads (final norm, projections,
temperature) at ``lr``.
"""

import ml_collections

from mmjax import config_base as base
from mmjax.config import Variants

VARIANTS = {"siglip": base.siglip, "tiny": base.two_tower_tiny}


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    variants = Variants(arg, __file__, VARIANTS, options={"llrd": 0.75})
    c = variants.apply(base.two_tower())
    c.optim.llrd = variants["llrd"]
    c.optim.lr = c.optim.lr / 2
    c.optim.ema_decay = 0.99
    c.init_from = ""  # the run to fine-tune, e.g. runs/default
    return c
