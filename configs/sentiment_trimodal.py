"""Three-modality sentiment on the built-in posts (mmjax/data/sentiment.py): a drawn face,
a voice contour and a short text, with a label that needs all three.

    mmjax train --config configs/sentiment_trimodal.py --workdir runs/sentiment       # gated
    mmjax train --config configs/sentiment_trimodal.py:late      # late fusion, concatenation
    mmjax train --config configs/sentiment_trimodal.py:tensor    # low-rank tensor fusion
    mmjax train --config configs/sentiment_trimodal.py:graph     # GCN over modality nodes
    mmjax train --config configs/sentiment_trimodal.py:early     # one stream over all tokens
    mmjax train --config configs/sentiment_trimodal.py:no_audio  # baselines: drop a modality
    mmjax train --config configs/sentiment_trimodal.py:image_only  # (also text_only)
    mmjax train --config configs/sentiment_trimodal.py:tiny      # seconds; for tests

The label (``data/sentiment.label_of``) is the face's when the face and the voice agree
(sarcasm: "i love it" with a frown and a falling voice is negative) and ``(face + voice +
text) % 3`` otherwise, so no one or two modalities predict it well: the best (Bayes)
accuracy is 5/9 from the face or the voice alone, 1/3 from the text alone and 5/9 from
any two (``no_image`` / ``no_text`` / ``no_audio``, ``image_only``, ``text_only``; a
fused model needs an image or a text tower, so there is no audio-only baseline: the voice
alone is bounded by 5/9 as the face is), while all three fix it. Encoders: a ViT on the
32 x 32 face, a bidirectional text encoder, an AST-style audio encoder
(``model.features.audio.kind='audio'``); eval ``eval/acc`` on the held-out posts.
"""

import ml_collections

from mmjax import config_base as base
from mmjax.config import Variant, Variants

WIDTH = 64
FUSIONS = {
    "gated": dict(kind="gated"),
    "late": dict(kind="late_concat"),
    "tensor": dict(kind="tensor_lowrank", hidden=32, rank=8),
    "graph": dict(kind="graph", graph_layers=2, adjacency="learned"),
    "early": dict(kind="early", depth=1, num_heads=4, mlp_dim=256),
}


def fusion(kind: dict) -> Variant:
    """The variant that fuses by ``kind`` (``FUSIONS``)."""

    def variant(c: ml_collections.ConfigDict) -> None:
        c.model.fusion = dict(width=WIDTH, **kind)

    return variant


def without(*modalities: str) -> Variant:
    """A baseline variant without ``modalities`` (any one or two leave the labels at chance)."""

    def variant(c: ml_collections.ConfigDict) -> None:
        for name in modalities:
            if name == "audio":
                c.model.features = {}
            else:
                c.model[name] = None

    return variant


def tiny(c: ml_collections.ConfigDict) -> None:
    """Every tower and the fusion of width 32; 4 steps."""
    c.task.head_hidden = 32
    for section in (c.model.image, c.model.text, c.model.features.get("audio"), c.model.fusion):
        base.shrink(section)
    c.data.update(train_records=2_000, eval_records=16)
    c.optim.update(lr=5e-3, warmup_steps=2)
    c.train.update(steps=4, batch_size=8, eval_batch_size=16, log_every=2, eval_every=4)
    c.train.checkpoint_every = 4


VARIANTS = {
    **{name: fusion(kind) for name, kind in FUSIONS.items()},
    "no_image": without("image"),
    "no_text": without("text"),
    "no_audio": without("audio"),
    "image_only": without("text", "audio"),
    "text_only": without("image", "audio"),
    "tiny": tiny,
}


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    c = base.fused()
    c.task.update(target="label", label_field="label", num_classes=3, head_hidden=128)
    small = dict(width=WIDTH, depth=1, num_heads=4, mlp_dim=256)
    c.model.image.update(image_size=32, patch_size=8, **small)
    c.model.text.update(vocab_size=64, context_length=8, **small)
    c.model.features = dict(
        audio=dict(kind="audio", max_frames=48, num_mels=32, time_patch=4, freq_patch=8, **small)
    )
    fusion(FUSIONS["gated"])(c)
    c.data.source = "generated:sentiment"
    c.data.tokenizer = "generated"
    c.data.image_size = 32
    base.audio_data(c, max_frames=48)
    c.data.eval_records = 512
    c.train.update(steps=600, batch_size=64, eval_batch_size=128, eval_every=200)
    c.train.update(log_every=25, checkpoint_every=600)
    return Variants(arg, __file__, VARIANTS, exclusive=[FUSIONS]).apply(c)
