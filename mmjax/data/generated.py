"""The built-in generated data sets beyond the shapes: ``config.data.source='generated:NAME'``.

    generated:moving_shapes   video-text clips (moving_shapes.py): data.image_size, data.num_frames
    generated:sounds          audio-text beeps (sounds.py): data.audio.sample_rate
    generated:sentiment       face + voice + text posts (sentiment.py)

Each has a ``train`` and an ``eval`` split of ``data.train_records`` /
``data.eval_records`` records from ``data.synthetic_seed``; nothing is read or written.
Their captions, questions and texts use the words of ``generated_tokenizer``
(``config.data.tokenizer='generated'``).
"""

from __future__ import annotations

from typing import Any

from mmjax.data import moving_shapes, sentiment, sounds

NAMES = ("moving_shapes", "sounds", "sentiment")


def open_generated(name: str, data_cfg: Any, split: str) -> Any:
    """The ``split`` source of generated data set ``name`` (``NAMES``)."""
    num = data_cfg.train_records if split == "train" else data_cfg.eval_records
    seed = int(data_cfg.get("synthetic_seed", 0))
    rate = int((data_cfg.get("audio") or {}).get("sample_rate", 8000))
    if name == "moving_shapes":
        frames = int(data_cfg.get("num_frames", 8))
        return moving_shapes.MovingShapes(
            split, num, seed=seed, image_size=data_cfg.image_size, num_frames=frames
        )
    if name == "sounds":
        return sounds.Sounds(split, num, seed=seed, sample_rate=rate)
    if name == "sentiment":
        return sentiment.SentimentPosts(
            split, num, seed=seed, image_size=data_cfg.image_size, sample_rate=rate
        )
    raise ValueError(f"config.data.source: unknown generated:{name}; known: {list(NAMES)}")


def generated_words() -> list[str]:
    """Every word of the generated sets' texts (the ``generated`` tokenizer's vocabulary)."""
    words = {*moving_shapes.caption_words(), *sounds.caption_words(), *sentiment.caption_words()}
    return sorted(words)
