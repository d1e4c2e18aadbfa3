"""The text-to-image family's bases (``configs/vqvae_synthetic.py``,
``configs/text_to_image_synthetic.py``): the VQ-VAE tokenizer, the text-conditioned
generator of its codes, and their ``tiny`` / ``48px`` variants, on the shared keys of
``mmjax.config_base``.

    vqvae()          a convolutional VQ-VAE image tokenizer (EMA codebook)
    text_to_image()  a text tower and a decoder of VQ-VAE codes (the tokenizer frozen)
"""

from __future__ import annotations

import ml_collections

from mmjax import config_base as base


def vqvae() -> ml_collections.ConfigDict:
    """A VQ-VAE for the 32 px synthetic shapes: an 8x8 grid of 1,024 codes of 64-d, dead
    codes restarted, the dead-zone reconstruction loss (``configs/vqvae_synthetic.py``;
    ``mmjax/models/vqvae.py``; README "Text-to-image" for the measurements)."""
    m = base.compute()
    m.vqvae = dict(
        image_size=32,
        channels=64,  # the 4x4 stride-2 convs' width (the first: half)
        res_channels=32,
        num_res_blocks=2,
        num_downsamples=2,  # 32 px -> an 8x8 code grid
        codebook_size=1024,
        code_dim=64,
        ema_decay=0.99,  # codebook EMA (sonnet's VectorQuantizerEMA)
        ema_eps=1e-5,  # Laplace smoothing of the code counts
        codebook_init_std=0.01,  # near the origin: every code starts close to every z
        dead_code_threshold=0.5,  # restart codes whose EMA count falls below (0: never)
    )
    task = dict(
        name="vqvae",
        commitment_cost=0.25,  # beta
        # > 0: the reconstruction loss is mean(max(|recon - image| - deadzone, 0)^2) plus
        # recon_mse_weight x the MSE ([0, 1] pixels), so a code gains little by coding the
        # pixel noise (the shapes' backgrounds: std 14/255) and spends itself on edges
        recon_deadzone=0.1,
        recon_mse_weight=0.1,
        # eval: image classifier runs (configs/classify_image.py, label_field=<attribute>)
        # that judge the reconstructions (the generator's ceiling); '' = not judged
        judges=dict(colour="", shape="", size="", where=""),
    )
    c = base.run(task, m)
    c.data.image_size = 32
    c.optim.update(lr=2e-3, warmup_steps=50, weight_decay=0.0, b2=0.99)
    c.train.update(steps=1500, batch_size=64, eval_batch_size=128, eval_every=500)
    c.train.checkpoint_every = 500
    return c


def vqvae_tiny(c: ml_collections.ConfigDict) -> None:
    """Variant ``tiny`` of ``vqvae``: 16 px images, a 4x4 grid of 32 codes; 20 steps."""
    c.model.vqvae.update(image_size=16, channels=16, res_channels=8, num_res_blocks=1)
    c.model.vqvae.update(codebook_size=32, code_dim=8)
    base.tiny_run(c)
    c.data.image_size = 16


def text_to_image() -> ml_collections.ConfigDict:
    """Captions -> VQ-VAE codes -> 32 px images (``configs/text_to_image_synthetic.py``):
    the CLIP text tower and a caption decoder over the codes, cross-attending to the text."""
    m = base.compute()
    m.vqvae = vqvae().model.vqvae  # must be the tokenizer run's (init_from loads it)
    m.text = base.clip_text(**base.MEDIUM, depth=2)
    m.decoder = dict(**base.SMALL, depth=3, act="gelu", tie_embeddings=True, dropout_rate=0.0)
    m.code_features = True  # code embeddings = learned + a projection of the frozen codebook
    task = dict(
        name="text_to_image",
        cond_drop=0.2,  # classifier-free guidance: P(caption -> the null caption)
        guidance_scale=1.5,  # eval sampling: uncond + s * (cond - uncond)
        temperature=1.0,
        top_k=5,  # 0 = the whole codebook
        # eval: image classifier runs (configs/classify_image.py, label_field=<attribute>)
        # that judge the samples; '' = not judged
        judges=dict(colour="", shape="", size="", where=""),
        clip="",  # eval: a contrastive run at the image size for the CLIP score; '' = none
    )
    c = base.run(task, m)
    c.data.image_size = m.vqvae.image_size
    c.optim.rules = [("vqvae/.*", None), (".*", {})]  # the tokenizer is frozen
    c.optim.update(lr=3e-3, weight_decay=0.01)
    c.train.update(steps=2800, batch_size=64, eval_batch_size=64, eval_every=0)
    c.train.checkpoint_every = 500
    return c


def vqvae_48px(c: ml_collections.ConfigDict) -> None:
    """Variant ``48px`` of ``vqvae`` (measured, README "Text-to-image"): 48 px images, a
    12x12 grid of codes of 4x4 px (each cell of the 3x3 position grid is 4x4 codes), dead
    codes restarted, 600 steps (4 min 4 s on one core). At 600 steps the 2,000-step shape
    judge reads the shape of 57% of its reconstructions (the 1,000-step judge: 62%; on a
    6x6 grid of 8x8 px codes that judge read 31%, colour 38%; with 2,048 codes 30% / 15%)."""
    _tokenizer_48px(c)
    c.task.update(recon_deadzone=0.0, recon_mse_weight=1.0)  # plain MSE, as measured
    c.train.update(steps=600, eval_every=0, checkpoint_every=600)


def _tokenizer_48px(c: ml_collections.ConfigDict) -> None:
    """The ``48px`` tokenizer, in its own run and inside the generator's ``model.vqvae``.
    Measured before the 32 px defaults moved to 1,024 codes and the dead-zone loss, so it
    keeps the 256 codes of 32-d it was measured with."""
    # Restart codes used less than about once in two steps (EMA count < 0.5): without it
    # 45% of the 6x6 tokenizer's 256 codes were unused after 1,000 steps.
    c.model.vqvae.update(image_size=48, num_downsamples=2, dead_code_threshold=0.5)
    c.model.vqvae.update(codebook_size=256, code_dim=32)
    c.data.image_size = 48


def text_to_image_48px(c: ml_collections.ConfigDict) -> None:
    """Variant ``48px`` of ``text_to_image``, over the ``48px`` tokenizer's 144 codes: a
    width-96 decoder (over 144 codes width 128 ran 0.8 steps/s, 96: 1.05), 500 steps
    to fit the 15-minute budget, too few: guided colour 0.41 (README "Text-to-image")."""
    _tokenizer_48px(c)
    c.model.decoder.update(base.MEDIUM)
    c.model.code_features = False  # as measured (before the 32 px defaults changed)
    c.optim.lr = 1e-3
    c.task.update(guidance_scale=3.0, top_k=0, cond_drop=0.1)
    c.train.update(steps=500, checkpoint_every=500)


def text_to_image_tiny(c: ml_collections.ConfigDict) -> None:
    """Variant ``tiny`` of ``text_to_image``: the tiny tokenizer (16 px, 4x4 codes of 32),
    tiny towers; 20 steps."""
    vqvae_tiny(c)
    c.model.text.update(base.TINY)
    c.model.decoder.update(base.TINY)
    c.data.eval_records = 16
