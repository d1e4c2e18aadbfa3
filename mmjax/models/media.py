"""Video and audio towers from a config section (``kind='video'`` / ``kind='audio'``).

``config.model.image`` (two-tower and fused models) or ``config.model.features.<name>``
(a fused model's extra modality) with ``kind`` set to one of ``MEDIA_KINDS`` builds
``VideoTransformer`` or ``AudioTransformer``; the section's other keys are the module's
fields (``configs/video_text_synthetic.py``, ``configs/audio_text_synthetic.py``).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import flax.linen as nn

MEDIA_KINDS = ("video", "audio")


def media_module(kind: str) -> type[nn.Module]:
    from mmjax.models.audio import AudioTransformer
    from mmjax.models.video import VideoTransformer

    return {"video": VideoTransformer, "audio": AudioTransformer}[kind]


def build_media_encoder(cfg: Any, dtype: Any, attention_impl: str | None, **memory: Any) -> Any:
    """The ``cfg.kind`` module with ``cfg``'s other keys as its fields (unknown keys and
    missing required ones are errors naming them)."""
    kind = cfg["kind"]
    module = media_module(kind)
    fields = {f.name: f for f in dataclasses.fields(module) if f.init}
    fields.pop("parent", None)
    fields.pop("name", None)
    given = {k: v for k, v in dict(cfg).items() if k != "kind"}
    unknown = sorted(set(given) - set(fields))
    if unknown:
        raise ValueError(f"config.model (kind={kind!r}): unknown keys {unknown}")
    kw = dict(given, dtype=dtype, attention_impl=attention_impl, **memory)
    for key in ("patch_size", "tubelet", "time_patch", "freq_patch"):
        if isinstance(kw.get(key), list):
            kw[key] = tuple(kw[key])
    missing = [
        n
        for n, f in fields.items()
        if n not in kw
        and f.default is dataclasses.MISSING
        and f.default_factory is dataclasses.MISSING
    ]
    if missing:
        raise ValueError(f"config.model (kind={kind!r}): missing keys {missing}")
    return module(**kw)
