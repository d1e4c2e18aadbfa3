"""An independent judge of generated synthetic-shapes images: per attribute (``shape``,
``colour``, ``size``, ``where``) an image classifier trained by mmjax on real synthetic
images (``configs/classify_image.py`` with ``--config.task.label_field=<attribute>
--config.task.num_classes=0``), which never saw a generated image.

``AttributeJudge({'colour': RUN, ...})`` loads each run's latest checkpoint;
``accuracy(images, labels)`` is, per attribute, the fraction of images the classifier
puts in the class of ``COMBINATIONS[label]`` (the caption the image was generated from).
``ClipScorer(RUN).score(images, captions)`` is the CLIP score of images against captions
with a CLIP trained by mmjax on the real images (also never shown a generated one).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from mmjax.config import ConfigError
from mmjax.data.synthetic_tasks import attribute_label

BATCH = 64


class AttributeJudge:
    """Classifiers by attribute: ``runs`` maps ``shape`` / ``colour`` / ``size`` / ``where``
    to a classifier run (workdir or checkpoint); empty paths are skipped."""

    def __init__(self, runs: Mapping[str, str]):
        from mmjax.inference.run_loading import load_run
        from mmjax.tasks import build_task

        self.judges: dict[str, tuple[Any, Any, int]] = {}
        for attr, path in runs.items():
            if not path:
                continue
            loaded = load_run(path)
            field = loaded.config.task.get("label_field", "")
            if loaded.config.task.get("target") != "label" or field != attr:
                raise ConfigError(
                    f"judge {attr!r}: {path} is not an image classifier of {attr!r} "
                    f"(task.target={loaded.config.task.get('target')!r}, label_field={field!r})"
                )
            task = build_task(loaded.config)
            predict = jax.jit(lambda p, x, t=task: jnp.argmax(t.logits(p, {"image": x}), -1))
            params = jax.tree.map(jnp.asarray, loaded.params)
            self.judges[attr] = (predict, params, int(task.image_size))

    def __bool__(self) -> bool:
        return bool(self.judges)

    def predict(self, images: np.ndarray) -> dict[str, np.ndarray]:
        """uint8 ``[n, H, W, 3]`` -> ``{attribute: class index [n]}``."""
        out = {}
        for attr, (predict, params, size) in self.judges.items():
            if images.shape[1:3] != (size, size):
                raise ValueError(f"judge {attr!r} reads {size} px images, got {images.shape}")
            rows = []
            for i in range(0, len(images), BATCH):
                chunk = images[i : i + BATCH]
                padded = np.concatenate([chunk, np.zeros_like(images[: BATCH - len(chunk)])])
                rows.append(np.asarray(predict(params, jnp.asarray(padded)))[: len(chunk)])
            out[attr] = np.concatenate(rows)
        return out

    def accuracy(self, images: np.ndarray, labels: np.ndarray) -> dict[str, float]:
        """``{attribute: accuracy}`` of ``images`` against the attributes of ``labels``
        (indices into ``synthetic.COMBINATIONS``)."""
        predicted = self.predict(images)
        return {
            attr: float(np.mean(pred == [attribute_label(int(y), attr) for y in labels]))
            for attr, pred in predicted.items()
        }


class ClipScorer:
    """CLIP score of images against their captions with a contrastive run trained by mmjax
    (``configs/clip_synthetic.py`` at the images' size; ``mmjax.load`` preprocesses):
    ``100 * mean(max(cos(image, caption), 0))`` over the pairs, torchmetrics'
    ``CLIPScore`` formula (Hessel et al. 2021 with weight 100)."""

    def __init__(self, run: str):
        from mmjax.inference.load import load

        self.pipeline = load(run)

    def score(self, images: np.ndarray, captions: list[str]) -> float:
        """uint8 ``[n, H, W, 3]`` and ``n`` captions -> the CLIP score (a float in [0, 100])."""
        if len(images) != len(captions):
            raise ValueError(f"{len(images)} images but {len(captions)} captions")
        image_emb = self.pipeline.embed_images(list(images))  # [n, dim], unit norm
        text_emb = self.pipeline.embed_texts(captions)  # [n, dim], unit norm
        cosine = np.sum(image_emb * text_emb, axis=-1)
        return float(100.0 * np.mean(np.maximum(cosine, 0.0)))


def to_uint8(images: Any) -> np.ndarray:
    """fp32 images in ``[0, 1]`` -> uint8 (rounded, clipped)."""
    return np.clip(np.round(np.asarray(images) * 255.0), 0, 255).astype(np.uint8)


def image_grid(images: np.ndarray, columns: int = 8, pad: int = 2) -> np.ndarray:
    """uint8 ``[n, H, W, 3]`` -> one uint8 grid image, ``columns`` wide, ``pad`` px apart."""
    n, h, w, _ = images.shape
    rows = -(-n // columns)
    grid = np.full((rows * (h + pad) + pad, columns * (w + pad) + pad, 3), 255, np.uint8)
    for i, image in enumerate(images):
        r, c = divmod(i, columns)
        grid[
            pad + r * (h + pad) : pad + r * (h + pad) + h,
            pad + c * (w + pad) : pad + c * (w + pad) + w,
        ] = image
    return grid
