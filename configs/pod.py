"""Pod-scale pretraining configs, with the mesh and memory settings `mmjax compile` chose.

    mmjax compile --config configs/pod.py:clip_b16,v5e-256 --topology v5e-256
    mmjax train   --config configs/pod.py:clip_b16,v5e-256 --workdir gs://BUCKET/runs/b16 \\
        --config.data.source=wds:gs://BUCKET/laion/{00000..04095}.tar

MODEL is one of ``clip_b16`` (OpenAI CLIP ViT-B/16), ``clip_l14`` (ViT-L/14), ``siglip_b16``
(SigLIP B/16, sigmoid loss, MAP head), ``siglip_so400m`` (SigLIP So400m/14) and
``coca_base`` (CoCa base: ViT-B/16 and a 12 + 12 layer decoder); SLICE is the TPU slice
(``v5e-256``, ``v5p-128``) whose mesh and memory settings apply (``SETTINGS``); no
argument means ``clip_b16,v5e-256``. All at a
global batch of 32k, bf16 compute, ``model.scan_layers`` (compile time flat in depth).
The data source is the synthetic one at 224 px (so compiling needs no data); point
``data.source`` at your shards to train. README "Running on a TPU pod" has the measured
compile reports.
"""

import ml_collections

from mmjax import config_base as base
from mmjax.config import ConfigError, Variants

BATCH = 32_768
# image: size, patch, width, depth, heads, mlp, pool; text: context, vocab, width, depth,
# heads, mlp; embed. CLIP rows as OpenAI's; SigLIP rows as big_vision's siglip configs.
ARCHS = {
    "clip_b16": dict(
        image=(224, 16, 768, 12, 12, 3072, "cls"), text=(77, 49408, 512, 12, 8, 2048), embed=512
    ),
    "clip_l14": dict(
        image=(224, 14, 1024, 24, 16, 4096, "cls"), text=(77, 49408, 768, 12, 12, 3072), embed=768
    ),
    "siglip_b16": dict(
        image=(224, 16, 768, 12, 12, 3072, "map"), text=(64, 32000, 768, 12, 12, 3072), embed=768
    ),
    "siglip_so400m": dict(
        image=(224, 14, 1152, 27, 16, 4304, "map"), text=(64, 32000, 1152, 27, 16, 4304), embed=1152
    ),
    "coca_base": dict(
        image=(224, 16, 768, 12, 12, 3072, "cls"), text=(64, 49408, 768, 12, 12, 3072), embed=768
    ),
}
# (model, slice) -> mesh and memory settings. FSDP over the slice; remat 'full' where HBM
# is tight (v5e: 16 GiB). Every row compiles and fits (README "Running on a TPU pod": the
# compile reports of 2026-12-02).
SETTINGS = {
    ("clip_b16", "v5e-256"): dict(fsdp=256, remat="full"),
    ("clip_b16", "v5p-128"): dict(fsdp=64, remat="dots_saveable"),
    ("clip_l14", "v5e-256"): dict(fsdp=256, remat="full"),
    ("clip_l14", "v5p-128"): dict(fsdp=64, remat="full"),
    ("siglip_b16", "v5e-256"): dict(fsdp=256, remat="full"),
    ("siglip_b16", "v5p-128"): dict(fsdp=64, remat="dots_saveable"),
    # So400m's width 1152 = 9 x 128 does not divide over 256 chips (those dims would stay
    # replicated and the step needs 17.1 GiB of 15.75): FSDP over 128, data-parallel x 2.
    ("siglip_so400m", "v5e-256"): dict(fsdp=128, data=2, remat="full"),
    ("siglip_so400m", "v5p-128"): dict(fsdp=64, remat="full"),
    ("coca_base", "v5e-256"): dict(fsdp=256, remat="full"),
    ("coca_base", "v5p-128"): dict(fsdp=64, remat="full"),
}
SLICES = sorted({s for _, s in SETTINGS})


VARIANTS = dict.fromkeys([*ARCHS, *SLICES])  # one MODEL and one SLICE


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    variants = Variants(arg or "clip_b16,v5e-256", __file__, VARIANTS, exclusive=[ARCHS, SLICES])
    if len(variants.names) != 2:
        raise ConfigError(
            f"config {__file__}: want MODEL,SLICE, got {arg!r}; MODEL: {', '.join(ARCHS)}, "
            f"SLICE: {', '.join(SLICES)}"
        )
    name, slice_name = variants.names
    arch, settings = ARCHS[name], SETTINGS[(name, slice_name)]
    coca = name == "coca_base"
    c = base.caption() if coca else base.two_tower()
    size, patch, width, depth, heads, mlp, pool = arch["image"]
    context, vocab, t_width, t_depth, t_heads, t_mlp = arch["text"]
    c.model.update(dtype="bfloat16", scan_layers=True, remat=settings["remat"])
    c.model.embed_dim = arch["embed"]
    c.model.image.update(
        image_size=size, patch_size=patch, width=width, depth=depth, num_heads=heads,
        mlp_dim=mlp, pool=pool, posemb="learn", act="gelu" if pool == "map" else "quick_gelu",
    )  # fmt: skip
    c.model.text.update(
        vocab_size=vocab, context_length=context, width=t_width, depth=t_depth,
        num_heads=t_heads, mlp_dim=t_mlp,
    )  # fmt: skip
    if coca:  # CoCa base: 12 unimodal + 12 multimodal decoder layers (ids: the tokenizer's)
        c.model.text.update(unimodal_depth=t_depth)
        c.task.max_decode_len = context
    else:
        c.model.text.eos_id = vocab - 1  # CLIP's end-of-text is the last id
    if name.startswith("siglip"):
        base.siglip(c)  # sigmoid loss, bias -10 (and the base's scale, log 10)
        c.model.text.update(pool="last", act="gelu")
    c.data.image_size = size
    c.mesh.update(data=settings.get("data", 1), fsdp=settings["fsdp"], tensor=1)
    c.train.update(batch_size=BATCH, eval_batch_size=1024, steps=100_000)
    return c
