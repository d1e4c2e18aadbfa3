"""CLIP's zero-shot prompt templates and the ImageNet-1k class names, shipped as package data.

``assets/imagenet_zeroshot.json`` was written from open_clip's
``src/open_clip/zero_shot_metadata.py`` (OpenAI's 80 ImageNet templates, the 7-template
subset, and open_clip's cleaned ImageNet-1k class names, in label order); each template
has one ``{}`` slot for the class name.
"""

from __future__ import annotations

import functools
import json
from importlib import resources
from typing import Any

ASSET = "imagenet_zeroshot.json"
TEMPLATE_SETS = ("imagenet", "simple_imagenet")


@functools.cache
def _data() -> dict[str, Any]:
    ref = resources.files("mmjax.inference") / "assets" / ASSET
    return json.loads(ref.read_text())


def imagenet_classnames() -> list[str]:
    """The 1,000 ImageNet-1k class names, index = label."""
    return list(_data()["imagenet_classnames"])


def templates(spec: str | list[str] | tuple[str, ...] | None) -> list[str]:
    """``None`` -> ``['{}']`` (the class name alone), ``'imagenet'`` -> CLIP's 80 templates,
    ``'simple_imagenet'`` -> their 7-template subset, a list -> itself (checked: one ``{}``
    slot each)."""
    if spec is None:
        return ["{}"]
    if isinstance(spec, str):
        if spec not in TEMPLATE_SETS:
            if spec.count("{}") == 1:
                return [spec]
            raise ValueError(
                f"templates: unknown set {spec!r}; known: {TEMPLATE_SETS} or a list of "
                "strings with one '{}' slot"
            )
        return list(_data()[f"{spec}_templates"])
    out = list(spec)
    bad = [t for t in out if t.count("{}") != 1]
    if not out or bad:
        raise ValueError(f"templates need one '{{}}' slot each: {bad[:3] or out}")
    return out
