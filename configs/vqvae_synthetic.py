"""Image tokenizer: a VQ-VAE (EMA codebook) trained on the 32 px synthetic shapes.

    mmjax train --config configs/vqvae_synthetic.py --workdir runs/vqvae
    mmjax train --config configs/vqvae_synthetic.py:tiny        # seconds; for tests

A convolutional encoder maps each image to an 8x8 grid of 64-d vectors, each replaced by
its nearest of 1,024 codebook entries (straight-through gradient, commitment loss 0.25);
the codebook follows the encoder outputs by exponential moving averages (sonnet's
``VectorQuantizerEMA``), its statistics kept as params that the trainer updates after
each step, and codes the EMA lets die restart. The reconstruction loss is a dead-zone
loss (``task.recon_deadzone``: errors within the pixel noise cost little). Eval:
reconstruction MSE and PSNR, the fraction of codes in use and the code perplexity. The
text-to-image generator (``configs/text_to_image_synthetic.py``) loads this run's
``vqvae/`` params frozen (``init_from``).
"""

import ml_collections

from mmjax import config_generative as generative
from mmjax.config import Variants

VARIANTS = {"tiny": generative.vqvae_tiny, "48px": generative.vqvae_48px}


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    return Variants(arg, __file__, VARIANTS).apply(generative.vqvae())
