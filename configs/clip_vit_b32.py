"""OpenAI CLIP ViT-B/32 architecture (151.3 M params), and smaller look-alikes.

    mmjax train --config configs/clip_vit_b32.py --workdir runs/b32        # ViT-B/32
    mmjax train --config configs/clip_vit_b32.py:small                     # 64 px, width 256
    mmjax train --config configs/clip_vit_b32.py:tiny                      # seconds; smoke tests

The model mirrors OpenAI CLIP (and so open_clip's ``ViT-B-32`` and transformers'
``CLIPModel``) parameter for parameter: a patch convolution without bias, a class
token, learned positions for every token (class token included), a LayerNorm on the
embeddings (``ln_pre``), quick_gelu, a causal text transformer pooled at the
end-of-text token, and projections without bias. ``benchmarks/vs_peers.py`` checks
the parameter counts against the peers. Data, optimizer and train sections are the
synthetic default's (``configs/clip_synthetic.py``), with images at the model's size.
"""

import ml_collections

from mmjax import config_base as base
from mmjax.config import Variants

ARCHS = {
    # image: size, patch, width, depth, heads; text: context, vocab, width, depth, heads; embed
    "b32": dict(image=(224, 32, 768, 12, 12), text=(77, 49408, 512, 12, 8), embed=512),
    "small": dict(image=(64, 8, 256, 4, 4), text=(32, 1000, 256, 4, 4), embed=256),
    "tiny": dict(image=(32, 8, 64, 1, 2), text=(16, 64, 64, 1, 2), embed=64),
}


def tiny(c: ml_collections.ConfigDict) -> None:
    """Seconds-long data and schedule (the base's lr and checkpoint interval)."""
    c.data.update(train_records=2_000, eval_records=32)
    c.optim.warmup_steps = 2
    c.train.update(steps=20, batch_size=16, eval_batch_size=16, log_every=5, eval_every=10)


VARIANTS = {"small": None, "tiny": tiny}  # one of them (default: B/32)


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    variants = Variants(arg, __file__, VARIANTS, exclusive=[VARIANTS])
    arch = ARCHS[next(iter(variants.names), "b32")]
    c = base.two_tower()
    size, patch, width, depth, heads = arch["image"]
    context, vocab, t_width, t_depth, t_heads = arch["text"]
    c.model.embed_dim = arch["embed"]
    c.model.image.update(
        image_size=size,
        patch_size=patch,
        width=width,
        depth=depth,
        num_heads=heads,
        mlp_dim=4 * width,
        pool="cls",
        posemb="learn",  # learned positions for every token, class token included
        act="quick_gelu",
        pre_norm_embeddings=True,
        patch_bias=False,
    )
    c.model.text.update(
        vocab_size=vocab,
        context_length=context,
        eos_id=vocab - 1,  # CLIP's end-of-text is the last token id
        width=t_width,
        depth=t_depth,
        num_heads=t_heads,
        mlp_dim=4 * t_width,
    )
    c.data.image_size = size
    return variants.apply(c)
