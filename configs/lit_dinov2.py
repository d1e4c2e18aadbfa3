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

from pathlib import Path

import ml_collections

from mmjax.config import load_config

BASE = Path(__file__).resolve().parent / "clip_synthetic.py"


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    from mmjax.hf.api import read_config
    from mmjax.hf.config_vision import image_config
    from mmjax.hf.hub import resolve

    source, *variants = (arg or "").split(",")
    if not source:
        raise ValueError("lit_dinov2: give the checkpoint, e.g. configs/lit_dinov2.py:DIR")
    res = [v for v in variants if v.startswith("res=")]
    unknown = set(variants) - {"tiny", *res}
    if unknown:
        raise ValueError(f"lit_dinov2: unknown variants {sorted(unknown)}; known: tiny, res=N")
    c = load_config(f"{BASE}:tiny" if "tiny" in variants else BASE)
    hf_config = read_config(resolve(source))
    c.model.image = image_config(hf_config)
    c.data.image_size = int(res[-1][4:]) if res else c.model.image.image_size
    # the checkpoint's image processor: ImageNet mean / std for DINOv2, 0.5 / 0.5 for BEiT
    c.data.normalization = "siglip" if hf_config.get("model_type") == "beit" else "imagenet"
    c.optim.rules = [
        ("image/.*", None),  # the locked DINOv2 tower
        (".*", {}),  # image projection, text tower, text projection, temperature
    ]
    c.init_from = f"hf:{source}"
    c.init_from_dont_load = []  # the checkpoint holds only image/...; the rest starts fresh
    return c
