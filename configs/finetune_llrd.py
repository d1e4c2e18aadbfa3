"""Fine-tune everything with layer-wise learning-rate decay (LLRD) and an EMA for eval.

    mmjax train --config configs/finetune_llrd.py:llrd=0.7 --workdir runs/llrd \\
        --config.init_from=runs/default

``arg``: comma-separated ``llrd=F`` (default 0.75) and ``clip_synthetic`` variants
(``tiny``, ``siglip``). Per tower with L layers, layer i trains at ``lr * llrd**(L - i)``,
the embeddings at ``lr * llrd**(L + 1)`` and the heads (final norm, projections,
temperature) at ``lr``.
"""

from pathlib import Path

import ml_collections

from mmjax.config import load_with_options

BASE = Path(__file__).resolve().parent / "clip_synthetic.py"


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    c, options = load_with_options(BASE, arg, {"llrd": 0.75}, "finetune_llrd")
    c.optim.llrd = options["llrd"]
    c.optim.lr = c.optim.lr / 2
    c.optim.ema_decay = 0.99
    c.init_from = ""  # the run to fine-tune, e.g. runs/default
    return c
