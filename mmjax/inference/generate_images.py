"""Images from captions with a trained ``text_to_image`` run (``mmjax predict generate``).

``generate_images(run, prompts, out_dir)`` samples one image per prompt (the run's
``config.task`` temperature / top-k; classifier-free guidance at the run's
``guidance_scale`` unless given, ``0`` or below: none), writes ``<out_dir>/<i>.png`` for
each and ``<out_dir>/grid.png`` with all of them, and returns one row per prompt.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from mmjax.config import ConfigError
from mmjax.evaluation.judge import image_grid, to_uint8


def generate_images(
    run: str | Path,
    prompts: Sequence[str],
    out_dir: str | Path,
    guidance_scale: float | None = None,
    seed: int = 0,
    batch_size: int = 32,
) -> list[dict[str, Any]]:
    """Writes the PNGs (module docstring); rows ``{'prompt', 'image', 'logp'}`` (``logp``:
    the sample's mean per-code log-probability under the (guided) model)."""
    from PIL import Image

    from mmjax.inference.run_loading import load_run
    from mmjax.tasks import build_task

    loaded = load_run(run)
    if loaded.config.task.name != "text_to_image":
        raise ConfigError(f"{run}: a {loaded.config.task.name!r} run, not text_to_image")
    task = build_task(loaded.config)
    scale = task.guidance_scale if guidance_scale is None else guidance_scale
    scale = scale if scale > 0 else None
    params = jax.tree.map(jnp.asarray, loaded.params)
    gen = jax.jit(lambda p, t, m, r: task.generate(p, t, m, r, scale))
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    images, rows = [], []
    rng = jax.random.PRNGKey(seed)
    for start in range(0, len(prompts), batch_size):
        chunk = list(prompts[start : start + batch_size])
        padded = chunk + [chunk[-1]] * (batch_size - len(chunk))  # one compiled shape
        tokens, mask = task.tokenizer(padded)
        out = gen(params, jnp.asarray(tokens), jnp.asarray(mask), jax.random.fold_in(rng, start))
        pixels = to_uint8(out["images"])[: len(chunk)]
        logp = np.asarray(out["logp"]).mean(axis=1)
        for i, (prompt, image) in enumerate(zip(chunk, pixels, strict=True)):
            path = out_dir / f"{start + i:04d}.png"
            Image.fromarray(image).save(path)
            rows.append({"prompt": prompt, "image": str(path), "logp": float(logp[i])})
        images.append(pixels)
    Image.fromarray(image_grid(np.concatenate(images))).save(out_dir / "grid.png")
    return rows
