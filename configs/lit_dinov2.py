"""LiT from a DINOv2 (or BEiT) checkpoint: the image tower is loaded from Hugging Face
and locked, a text tower is trained from scratch against it on the synthetic data.

    mmjax train --config configs/lit_dinov2.py:facebook/dinov2-small,res=224 --workdir runs/lit
    mmjax train --config configs/lit_dinov2.py:/path/to/dinov2_dir,tiny --workdir /tmp/lit

``arg`` is ``DIR_OR_HUB_ID[,tiny][,res=N]``: a model directory (or a Hub id already in
the HF cache; nothing is downloaded) whose ``config.json`` fixes the image tower
(``mmjax.hf.config_vision.image_config``) and whose weights ``init_from='hf:...'`` loads;
``tiny`` is the seconds-long ``clip_synthetic:tiny`` text tower and schedule; ``res=N``
trains at N px instead of the checkpoint's size (DINOv2 resizes its positions as
transformers does; N a multiple of the patch size). The image tower is frozen (no
gradient, no optimizer state); the image projection, text tower and temperature train.
"""

import ml_collections

from mmjax import config_base as base
from mmjax.config import Variants

VARIANTS = {"tiny": base.two_tower_tiny}


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    from mmjax.hf.api import read_config
    from mmjax.hf.config_vision import image_config
    from mmjax.hf.hub import resolve

    variants = Variants(arg, __file__, VARIANTS, options={"res": 0}, first="DIR_OR_HUB_ID")
    source = variants.first
    c = variants.apply(base.two_tower())
    hf_config = read_config(resolve(source))
    c.model.image = image_config(hf_config)
    c.data.image_size = variants["res"] or c.model.image.image_size  # res=0: the checkpoint's
    # the checkpoint's image processor: ImageNet mean / std for DINOv2, 0.5 / 0.5 for BEiT
    c.data.normalization = "siglip" if hf_config.get("model_type") == "beit" else "imagenet"
    c.optim.rules = [
        ("image/.*", None),  # the locked DINOv2 tower
        (".*", {}),  # image projection, text tower, text projection, temperature
    ]
    c.init_from = f"hf:{source}"
    c.init_from_dont_load = []  # the checkpoint holds only image/...; the rest starts fresh
    return c
