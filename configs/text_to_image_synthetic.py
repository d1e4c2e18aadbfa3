"""Text-to-image on the synthetic shapes: captions -> VQ-VAE codes -> 32 px images.

    mmjax train --config configs/vqvae_synthetic.py --workdir runs/vqvae
    mmjax train --config configs/text_to_image_synthetic.py --workdir runs/t2i \\
        --config.init_from=runs/vqvae
    mmjax train --config configs/text_to_image_synthetic.py:tiny   # seconds; for tests

The tokenizer (``configs/vqvae_synthetic.py``) is trained first and loaded frozen
(``init_from``; ``optim.rules`` freezes ``vqvae/.*``). A CLIP text tower encodes the
caption; a caption decoder over the 1,024 codes (+ BOS; its code embeddings see the
frozen codebook) predicts the image's 8x8 code grid in raster order, cross-attending to
the text. Captions are dropped to the empty caption with probability 0.2 (classifier-free
guidance; sampled with guidance 1.5 and top-k 5). Eval: teacher-forced code cross-entropy
with the caption and with the null caption, and guided samples (KV-cached, jitted).
"""

import ml_collections

from mmjax import config_generative as generative
from mmjax.config import Variants

VARIANTS = {"tiny": generative.text_to_image_tiny, "48px": generative.text_to_image_48px}


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    return Variants(arg, __file__, VARIANTS).apply(generative.text_to_image())
