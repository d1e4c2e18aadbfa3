"""Video-text contrastive retrieval on the built-in moving shapes (mmjax/data/moving_shapes.py).

    mmjax train --config configs/video_text_synthetic.py --workdir runs/video_text
    mmjax train --config configs/video_text_synthetic.py:factorised    # spatial then temporal
    mmjax train --config configs/video_text_synthetic.py:middle_frame  # control: no motion
    mmjax train --config configs/video_text_synthetic.py:tiny          # seconds; for tests

A ViViT tower (8 frames of 32 x 32, 2 x 8 x 8 tubelets, joint space-time attention) and a
CLIP text tower; eval is recall@K over the 256 distinct captions of the held-out split
(one clip per caption: 4 shapes x 8 colours x 8 directions; chance R@1 = 1/256). With
``middle_frame`` every clip shows its middle frame 8 times: shape and colour stay
readable, the direction does not (R@1 at best 8/256 ~ 0.03 if shape and colour are
perfect: one in 8 directions).
"""

from pathlib import Path

import ml_collections

from mmjax.config import load_with_options

BASE = Path(__file__).resolve().parent / "clip_synthetic.py"
VOCAB = 64  # the 'generated' tokenizer's tokens


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    variants = set((arg or "").split(",")) - {""}
    unknown = variants - {"factorised", "middle_frame", "tiny"}
    if unknown:
        raise ValueError(
            f"video_text_synthetic: unknown variants {sorted(unknown)}; "
            "known: factorised, middle_frame, tiny"
        )
    c, _ = load_with_options(BASE, "", {}, "video_text_synthetic")
    c.task.zeroshot = {}
    c.model.image = dict(
        kind="video",
        num_frames=8,
        image_size=32,
        patch_size=8,
        tubelet=2,
        width=96,
        depth=2,
        num_heads=4,
        mlp_dim=384,
        attention="joint",  # 'joint' | 'factorised' (spatial encoder, then temporal)
        temporal_depth=1,
        pool="mean",
        posemb="sincos",  # 'sincos' (fixed) | 'learn' (spatial + temporal tables)
        pre_norm_embeddings=True,
    )
    c.model.embed_dim = 96
    c.model.text.update(vocab_size=VOCAB, width=96, depth=2, num_heads=4, mlp_dim=384)
    c.data.source = "generated:moving_shapes"
    c.data.tokenizer = "generated"
    c.data.image_size = 32
    c.data.num_frames = 8
    c.data.video_frames = "all"  # 'middle_frame': the no-motion control
    c.data.eval_records = 256
    c.optim.lr = 2e-3
    c.optim.warmup_steps = 50
    c.train.update(steps=800, batch_size=64, eval_batch_size=128, eval_every=200)
    c.train.update(log_every=25, checkpoint_every=400)
    if "factorised" in variants:
        c.model.image.attention = "factorised"
    if "middle_frame" in variants:
        c.data.video_frames = "middle_frame"
    if "tiny" in variants:
        c.model.embed_dim = 32
        c.model.image.update(
            num_frames=4, image_size=16, width=32, depth=1, num_heads=2, mlp_dim=64
        )
        c.model.text.update(width=32, depth=1, num_heads=2, mlp_dim=64)
        c.data.update(image_size=16, num_frames=4, train_records=2_000, eval_records=32)
        c.optim.update(lr=5e-3, warmup_steps=2)
        c.train.update(steps=6, batch_size=8, eval_batch_size=16, log_every=3, eval_every=6)
        c.train.checkpoint_every = 6
    return c
