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

The label is ``(face + voice + text) % 3`` of the cue codes, so any one or two
modalities leave the three labels equally likely: chance is 1/3 for every model that
drops a modality (``no_image`` / ``no_text`` / ``no_audio``, ``image_only``,
``text_only``). Encoders: a ViT on the 32 x 32 face, a bidirectional text encoder, an
AST-style audio encoder (``model.features.audio.kind='audio'``); eval ``eval/acc`` on
the held-out posts.
"""

from pathlib import Path

import ml_collections

from mmjax.config import load_with_options

BASE = Path(__file__).resolve().parent / "clip_synthetic.py"
FUSIONS = {
    "gated": dict(kind="gated"),
    "late": dict(kind="late_concat"),
    "tensor": dict(kind="tensor_lowrank", hidden=32, rank=8),
    "graph": dict(kind="graph", graph_layers=2, adjacency="learned"),
    "early": dict(kind="early", depth=1, num_heads=4, mlp_dim=256),
}
DROPS = ("no_image", "no_text", "no_audio", "image_only", "text_only")


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    variants = set((arg or "").split(",")) - {""}
    unknown = variants - {*FUSIONS, *DROPS, "tiny"}
    if unknown:
        raise ValueError(
            f"sentiment_trimodal: unknown variants {sorted(unknown)}; "
            f"known: {[*FUSIONS, *DROPS, 'tiny']}"
        )
    c, _ = load_with_options(BASE, "", {}, "sentiment_trimodal")
    c.task = dict(name="classify", target="label", label_field="label", num_classes=3)
    c.task.head_hidden = 128
    for key in ("embed_dim", "logit_scale_init", "logit_bias_init"):  # contrastive only
        del c.model[key]
    width = 64
    small = dict(width=width, depth=1, num_heads=4, mlp_dim=256)
    c.model.image.update(image_size=32, patch_size=8, pool="mean", **small)
    c.model.text.update(vocab_size=64, context_length=8, causal=False, act="gelu", **small)
    c.model.features = dict(
        audio=dict(kind="audio", max_frames=48, num_mels=32, time_patch=4, freq_patch=8, **small)
    )
    fusion = [v for v in variants if v in FUSIONS] or ["gated"]
    c.model.fusion = dict(width=width, **FUSIONS[fusion[0]])
    c.data.source = "generated:sentiment"
    c.data.tokenizer = "generated"
    c.data.image_size = 32
    c.data.audio = dict(sample_rate=8000, n_fft=256, hop=128, num_mels=32, max_frames=48)
    c.data.eval_records = 512
    c.optim.lr = 2e-3
    c.optim.warmup_steps = 50
    c.optim.weight_decay = 0.01
    c.train.update(steps=600, batch_size=64, eval_batch_size=128, eval_every=200)
    c.train.update(log_every=25, checkpoint_every=600)
    if "no_image" in variants or "text_only" in variants:
        c.model.image = None
    if "no_text" in variants or "image_only" in variants:
        c.model.text = None
    if variants & {"no_audio", "image_only", "text_only"}:
        c.model.features = {}
    if "tiny" in variants:
        c.task.head_hidden = 32
        tiny = dict(width=32, depth=1, num_heads=2, mlp_dim=64)
        for section in (c.model.image, c.model.text, c.model.features.get("audio")):
            if section is not None:
                section.update(tiny)
        c.model.fusion.update(width=32)
        if "mlp_dim" in c.model.fusion:
            c.model.fusion.update(num_heads=2, mlp_dim=64)
        c.data.update(train_records=2_000, eval_records=16)
        c.optim.update(lr=5e-3, warmup_steps=2)
        c.train.update(steps=4, batch_size=8, eval_batch_size=16, log_every=2, eval_every=4)
        c.train.checkpoint_every = 4
    return c
