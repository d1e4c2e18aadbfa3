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

from pathlib import Path

import ml_collections

from mmjax.config import load_with_options
from mmjax.data.moving_shapes import DIRECTIONS

BASE = Path(__file__).resolve().parent / "video_text_synthetic.py"


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    c, _ = load_with_options(BASE, arg, {}, "video_qa_synthetic")
    tiny = "tiny" in (arg or "").split(",")
    c.task = dict(
        name="classify",
        target="vqa",
        vqa_loss="softmax",
        answers=list(DIRECTIONS),
        head_hidden=32 if tiny else 128,
    )
    video = dict(c.model.image)
    width = video["width"]
    for key in ("embed_dim", "logit_scale_init", "logit_bias_init"):  # contrastive only
        del c.model[key]
    c.model.image = None
    c.model.features = dict(video=video)
    c.model.text.update(causal=False, act="gelu", depth=1)
    heads = video["num_heads"]
    c.model.fusion = dict(
        kind="cross_attention", width=width, depth=1, num_heads=heads, mlp_dim=4 * width
    )
    return c
