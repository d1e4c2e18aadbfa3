"""Audio-text contrastive retrieval on the built-in beeps (mmjax/data/sounds.py).

    mmjax train --config configs/audio_text_synthetic.py --workdir runs/audio_text
    mmjax train --config configs/audio_text_synthetic.py:tiny   # seconds; for tests

An AST-style tower over log-mel spectrograms (8 kHz clips of 0.7-1 s, 32 mel bins,
128-sample hop: up to 63 frames, zero-padded to 64 with a frame mask; 4 x 8 time x
frequency patches) and a CLIP text tower; SpecAugment time / frequency masking while
training. Eval is recall@K over the 36 distinct captions of the held-out split ("three
high buzzy beeps": 4 counts x 3 pitches x 3 timbres; chance R@1 = 1/36).
"""

import ml_collections

from mmjax import config_base as base
from mmjax.config import Variants

VOCAB = 64  # the 'generated' tokenizer's tokens


def tiny(c: ml_collections.ConfigDict) -> None:
    """Up to 32 frames (hop 256), towers of width 32; 6 steps."""
    c.model.embed_dim = 32
    c.model.image.update(base.TINY, max_frames=32)
    c.model.text.update(base.TINY)
    c.data.audio.update(hop=256, max_frames=32)
    c.data.update(train_records=2_000, eval_records=16)
    c.optim.update(lr=5e-3, warmup_steps=2)
    c.train.update(steps=6, batch_size=8, eval_batch_size=16, log_every=3, eval_every=6)
    c.train.checkpoint_every = 6


VARIANTS = {"tiny": tiny}


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    c = base.two_tower()
    c.task.zeroshot = {}
    c.model.image = dict(
        kind="audio",
        max_frames=64,
        num_mels=32,
        time_patch=4,
        freq_patch=8,
        width=96,
        depth=2,
        num_heads=4,
        mlp_dim=384,
        pool="mean",
        posemb="learn",
    )
    c.model.embed_dim = 96
    c.model.text.update(vocab_size=VOCAB, width=96, depth=1, num_heads=4, mlp_dim=384)
    c.data.source = "generated:sounds"
    c.data.tokenizer = "generated"
    spec_augment = dict(time_masks=2, time_width=4, freq_masks=1, freq_width=3)
    base.audio_data(c, max_frames=64, spec_augment=spec_augment)  # SpecAugment: training only
    c.data.eval_records = 36
    c.train.update(steps=400, batch_size=64, eval_batch_size=36, eval_every=200)
    c.train.update(log_every=25, checkpoint_every=400)
    return Variants(arg, __file__, VARIANTS).apply(c)
