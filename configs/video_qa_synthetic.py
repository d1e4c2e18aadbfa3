"""Video question answering on the built-in moving shapes: "which way does the red circle
move ?" -> one of 8 directions, the question cross-attending to the video tokens.

    mmjax train --config configs/video_qa_synthetic.py --workdir runs/video_qa
    mmjax train --config configs/video_qa_synthetic.py:middle_frame  # control: no motion
    mmjax train --config configs/video_qa_synthetic.py:tiny          # seconds; for tests

A ViViT tower (``model.features.video.kind='video'``, joint space-time attention) and a
bidirectional text encoder, fused by cross-attention (``model.fusion.kind``), then an MLP
head over the 8 answers; eval ``eval/vqa_acc`` on the held-out clips (chance 1/8; the
question never names the direction).
"""

import ml_collections

from mmjax import config_base as base
from mmjax.config import Variants
from mmjax.data.moving_shapes import DIRECTIONS

VOCAB = 64  # the 'generated' tokenizer's tokens


def factorised(c: ml_collections.ConfigDict) -> None:
    """Spatial attention within frames, then temporal across them."""
    c.model.features.video.attention = "factorised"


def middle_frame(c: ml_collections.ConfigDict) -> None:
    """The no-motion control: the direction cannot be answered (chance 1/8)."""
    c.data.video_frames = "middle_frame"


def tiny(c: ml_collections.ConfigDict) -> None:
    """4 frames of 16 px, towers and fusion of width 32; 6 steps."""
    c.task.head_hidden = 32
    base.video_tiny(c, c.model.features.video)
    c.model.fusion.update(width=32, num_heads=2, mlp_dim=4 * 32)


VARIANTS = {"factorised": factorised, "middle_frame": middle_frame, "tiny": tiny}


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    c = base.fused()
    # answers: a list of strings where the base has '' (a file name): set as a new dict
    c.task = dict(c.task, vqa_loss="softmax", answers=list(DIRECTIONS), head_hidden=128)
    del c.task["label_field"], c.task["num_classes"]  # 'label' targets on the synthetic shapes
    c.model.image = None
    c.model.features = dict(video=base.vivit())
    c.model.text.vocab_size = VOCAB
    c.model.fusion.depth = 1
    base.moving_shapes(c)
    c.optim.weight_decay = 0.05
    c.train.update(steps=800, batch_size=64, eval_batch_size=128, eval_every=200)
    c.train.update(log_every=25, checkpoint_every=400)
    return Variants(arg, __file__, VARIANTS).apply(c)
