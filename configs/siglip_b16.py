"""SigLIP ViT-B/16 architecture (google/siglip-base-patch16-224), and a tiny look-alike.

    mmjax train --config configs/siglip_b16.py --workdir runs/siglip     # B/16, 224 px
    mmjax train --config configs/siglip_b16.py:tiny                      # seconds; tests

The model is transformers' ``SiglipModel`` parameter for parameter (it is built from an HF
SigLIP config through ``mmjax.hf.config_map.model_config``): a ViT with a patch bias,
learned positions, a MAP-attention pooling head and no image projection; a bidirectional
text transformer pooled at the last position with a biased projection; the sigmoid loss
with a learned bias (big_vision's init: scale log 10, bias -10), so a run exports with
``mmjax export --to-hf`` as a ``SiglipModel``. Data, optimizer and train sections are the
synthetic default's (``configs/clip_synthetic.py``), with images at the model's size and
texts padded to the context length (64, what transformers' SigLIP pipeline pads to).
"""

import math

import ml_collections

from mmjax import config_base as base
from mmjax.config import Variants
from mmjax.hf.config_map import model_config

ARCHS = {
    # image: size, patch, width, depth, heads; text: context, vocab, width, depth, heads
    "b16": dict(image=(224, 16, 768, 12, 12), text=(64, 32000, 768, 12, 12)),
    "tiny": dict(image=(32, 8, 32, 1, 2), text=(64, 64, 32, 1, 2)),
}


def _hf_config(arch: dict) -> dict:
    size, patch, width, depth, heads = arch["image"]
    context, vocab, t_width, t_depth, t_heads = arch["text"]
    encoder = dict(hidden_act="gelu_pytorch_tanh", layer_norm_eps=1e-6)
    return dict(
        architectures=["SiglipModel"],
        vision_config=dict(
            encoder,
            image_size=size,
            patch_size=patch,
            hidden_size=width,
            num_hidden_layers=depth,
            num_attention_heads=heads,
            intermediate_size=4 * width,
        ),
        text_config=dict(
            encoder,
            max_position_embeddings=context,
            vocab_size=vocab,
            hidden_size=t_width,
            num_hidden_layers=t_depth,
            num_attention_heads=t_heads,
            intermediate_size=4 * t_width,
            projection_size=width,
        ),
    )


VARIANTS = {"tiny": base.two_tower_tiny}


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    variants = Variants(arg, __file__, VARIANTS)
    c = variants.apply(base.two_tower())  # data / optim / train: tiny's for tiny
    base.siglip(c)
    c.model = model_config(_hf_config(ARCHS["tiny" if "tiny" in variants else "b16"]))
    c.model.remat = "none"
    c.model.scan_layers = False
    c.model.logit_scale_init = math.log(10.0)
    c.model.logit_bias_init = -10.0
    for tower in (c.model.image, c.model.text):
        tower.dropout_rate = 0.0
    c.data.image_size = c.model.image.image_size
    return c
