"""Captioning: a small CoCa (contrastive captioner) trained from scratch on the synthetic shapes.

    mmjax train --config configs/caption_coca.py --workdir runs/coca
    mmjax train --config configs/caption_coca.py:captioning_only   # contrastive_weight=0
    mmjax train --config configs/caption_coca.py:tiny              # seconds; for tests

A ViT encodes the image; a causal text decoder (1 unimodal + 2 multimodal layers that
cross-attend to the ViT tokens) is trained with teacher forcing, plus CLIP's contrastive
loss between the ViT class token and the unimodal text output at EOS. Eval generates
captions for held-out images (greedy and beam search, both under jit with a KV cache)
and scores them against every caption the grammar gives the image: BLEU-4, CIDEr-D,
and retrieval recall from the contrastive embeddings. Sized for a few minutes on a
2-core CPU.
"""

import ml_collections

from mmjax import config_base as base
from mmjax.config import Variants


def captioning_only(c: ml_collections.ConfigDict) -> None:
    """No contrastive loss: no projections, no retrieval eval."""
    c.task.contrastive_weight = 0.0


VARIANTS = {"captioning_only": captioning_only, "tiny": base.caption_tiny}


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    return Variants(arg, __file__, VARIANTS).apply(base.caption())
