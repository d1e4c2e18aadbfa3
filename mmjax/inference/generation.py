"""``ImageGenerator``: a trained ``text_to_image`` run with its tokenizer and jitted sampler.

    gen = mmjax.load("runs/t2i")                       # run workdir, checkpoints/ or step dir
    out = gen.generate(["a small red circle at the top left"], seed=0)
    out.images                                         # uint8 [1, H, W, 3]
    out.logp                                           # float32 [1]: mean per-code log-prob
    out.to_pil()[0].save("circle.png")                 # as a diffusers pipeline's .images

Sampling is ``TextToImageTask.generate`` (the run's ``config.task`` temperature / top-k):
captions tokenized by the run's tokenizer, codes drawn with the KV-cached decoder, decoded
to pixels by the frozen VQ-VAE. ``mmjax predict generate`` (``generate_images``) writes
these same images as PNGs.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from mmjax.config import ConfigError
from mmjax.evaluation.judge import to_uint8
from mmjax.inference.run_loading import LoadedRun, load_run

GENERATION_TASKS = ("text_to_image",)


@dataclasses.dataclass(frozen=True)
class GeneratedImages:
    """One row per text: ``images`` uint8 ``[n, H, W, 3]``, ``logp`` float32 ``[n]`` (the
    sample's mean per-code log-probability under the (guided) model, <= 0) and ``codes``
    int32 ``[n, grid * grid]`` (the VQ-VAE codes the images decode from, raster order)."""

    images: np.ndarray
    logp: np.ndarray
    codes: np.ndarray

    def __len__(self) -> int:
        return len(self.images)

    def to_pil(self) -> list[Any]:
        """The images as RGB ``PIL.Image.Image`` (what diffusers pipelines return)."""
        from PIL import Image

        return [Image.fromarray(image) for image in self.images]


class ImageGenerator:
    """Text-to-image sampling from a ``text_to_image`` task and its params.

    Texts run in chunks of ``batch_size`` rows, the last chunk padded with its last text, so
    the sampler compiles once per guidance setting. The draws of a chunk come from
    ``fold_in(PRNGKey(seed), start)`` (``start``: the chunk's first row), so an image
    depends on the seed, its row and ``batch_size``, not on other calls.
    """

    def __init__(self, task: Any, params: Any, *, batch_size: int = 32, source: str = ""):
        if batch_size < 1:
            raise ValueError(f"ImageGenerator: batch_size must be >= 1, got {batch_size}")
        self.task, self.source, self.batch_size = task, source, int(batch_size)
        self.params = jax.device_put(jax.tree.map(jnp.asarray, params))
        self.tokenizer = task.tokenizer
        self.image_size = int(task.image_size)
        # the scale is static: None (no null-caption rows) and a float trace different graphs
        self._sample = jax.jit(task.generate, static_argnums=4)

    @classmethod
    def from_run(cls, run: str | Path | LoadedRun, *, batch_size: int = 32) -> ImageGenerator:
        """The latest (or given) checkpoint step of a ``text_to_image`` run (its EMA params
        when it kept an EMA)."""
        from mmjax.tasks import build_task

        loaded = run if isinstance(run, LoadedRun) else load_run(run)
        name = loaded.config.task.name
        if name not in GENERATION_TASKS:
            where = loaded.step_dir if isinstance(run, LoadedRun) else run
            raise ConfigError(f"{where}: a {name!r} run, not text_to_image")
        task = build_task(loaded.config)
        return cls(task, loaded.params, batch_size=batch_size, source=str(loaded.step_dir))

    def __repr__(self) -> str:
        return f"ImageGenerator({self.source or 'in memory'}, {self.image_size}px)"

    def guidance(self, guidance_scale: float | None) -> float | None:
        """The scale ``generate`` samples with: ``None`` -> the run's
        ``config.task.guidance_scale``; ``<= 0`` -> ``None`` (no guidance)."""
        scale = self.task.guidance_scale if guidance_scale is None else float(guidance_scale)
        return scale if scale > 0 else None

    def generate(
        self, texts: Sequence[str], *, guidance_scale: float | None = None, seed: int = 0
    ) -> GeneratedImages:
        """One image per text (``GeneratedImages``); ``guidance_scale``: classifier-free
        guidance ``uncond + s * (cond - uncond)``, ``None`` the run's, ``<= 0`` none. An
        empty list gives empty arrays."""
        if isinstance(texts, str):
            raise TypeError("generate: texts must be a list of strings, not one string")
        texts, scale = list(texts), self.guidance(guidance_scale)
        if not texts:  # as Pipeline.embed_texts([]): empty rows, not an error
            size = self.image_size
            return GeneratedImages(
                np.zeros((0, size, size, 3), np.uint8),
                np.zeros((0,), np.float32),
                np.zeros((0, self.task.num_codes), np.int32),
            )
        rng = jax.random.PRNGKey(seed)
        images, logps, codes = [], [], []
        for start in range(0, len(texts), self.batch_size):
            chunk = texts[start : start + self.batch_size]
            padded = chunk + [chunk[-1]] * (self.batch_size - len(chunk))  # one compiled shape
            tokens, mask = self.tokenizer(padded)
            out = self._sample(
                self.params,
                jnp.asarray(tokens),
                jnp.asarray(mask),
                jax.random.fold_in(rng, start),
                scale,
            )
            n = len(chunk)
            images.append(to_uint8(out["images"])[:n])
            logps.append(np.asarray(out["logp"]).mean(axis=1)[:n])
            codes.append(np.asarray(out["codes"])[:n])
        return GeneratedImages(np.concatenate(images), np.concatenate(logps), np.concatenate(codes))
