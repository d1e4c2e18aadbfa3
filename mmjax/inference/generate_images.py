"""Images from captions with a trained ``text_to_image`` run (``mmjax predict generate``).

``generate_images(run, prompts, out_dir)`` samples one image per prompt with
``ImageGenerator`` (the run's ``config.task`` temperature / top-k; classifier-free guidance
at the run's ``guidance_scale`` unless given, ``0`` or below: none), writes
``<out_dir>/<i>.png`` for each and ``<out_dir>/grid.png`` with all of them, and returns one
row per prompt.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from mmjax.evaluation.judge import image_grid
from mmjax.inference.generation import ImageGenerator


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

    prompts = list(prompts)
    if not prompts:  # there would be no grid to write
        raise ValueError("generate_images: no prompts")
    generator = ImageGenerator.from_run(run, batch_size=batch_size)
    out = generator.generate(prompts, guidance_scale=guidance_scale, seed=seed)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    rows = []
    for i, (prompt, image, logp) in enumerate(zip(prompts, out.images, out.logp, strict=True)):
        path = out_dir / f"{i:04d}.png"
        Image.fromarray(image).save(path)
        rows.append({"prompt": prompt, "image": str(path), "logp": float(logp)})
    Image.fromarray(image_grid(out.images)).save(out_dir / "grid.png")
    return rows
