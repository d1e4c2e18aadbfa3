"""Zero-shot classification prompts: class names x templates, tokenized once.

``config.task.zeroshot`` either names the classes and templates (``class_names``,
``templates`` with a ``{}`` slot, e.g. ``'a photo of a {}.'``; record labels are
class indices) or, for the built-in synthetic data, an attribute of
``mmjax.data.synthetic.COMBINATIONS`` (``synthetic_attribute='shape'``): the classes
are that attribute's values and the templates every caption with the attribute left
out, so a class embedding is the mean over the captions that name it (prompt
ensembling, as CLIP does with its 80 ImageNet templates).
"""

from __future__ import annotations

import functools
import itertools
from typing import Any

import numpy as np

from mmjax.data import sources, synthetic
from mmjax.data.tokenizer import load_tokenizer

ATTRIBUTES = ("shape", "colour", "size", "where")


class ZeroShotPrompts:
    """``num_classes`` x ``len(templates)`` prompts; ``tokens`` are ``(ids, mask)``
    ``[classes * templates, length]``, class-major."""

    def __init__(
        self,
        class_names: list[str],
        templates: list[str],
        tokenizer_name: str,
        length: int,
        synthetic_attribute: str = "",
    ):
        if not class_names or not templates:
            raise ValueError("config.task.zeroshot needs class_names and templates")
        bad = [t for t in templates if t.count("{}") != 1]
        if bad:
            raise ValueError(f"config.task.zeroshot.templates need one '{{}}' slot: {bad[:3]}")
        self.class_names, self.templates = list(class_names), list(templates)
        self.tokenizer_name, self.length = tokenizer_name, length
        self.synthetic_attribute = synthetic_attribute

    @classmethod
    def from_config(cls, config: Any) -> ZeroShotPrompts | None:
        """Prompts of ``config.task.zeroshot``; ``None`` when it is absent or empty, or when it
        names only a synthetic attribute and the data is not synthetic."""
        zs = config.task.get("zeroshot")
        if not zs:
            return None
        tokenizer, length = config.data.tokenizer, config.model.text.context_length
        attribute = zs.get("synthetic_attribute", "")
        if zs.get("class_names"):  # explicit classes win (real data: labels are class indices)
            return cls(list(zs.class_names), list(zs.get("templates") or ["{}"]), tokenizer, length)
        if attribute and not sources.is_shapes_world(config.data, "eval"):
            return None  # the synthetic attribute means nothing for another source's labels
        if attribute:
            if attribute not in ATTRIBUTES:
                raise ValueError(
                    f"config.task.zeroshot.synthetic_attribute: unknown {attribute!r}; "
                    f"known: {ATTRIBUTES}"
                )
            names, templates = synthetic_prompts(attribute)
            return cls(names, templates, tokenizer, length, attribute)
        return None

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @functools.cached_property
    def tokens(self) -> tuple[np.ndarray, np.ndarray]:
        tok = load_tokenizer(self.tokenizer_name, self.length)
        return tok([t.format(c) for c in self.class_names for t in self.templates])

    def class_of(self, labels: np.ndarray) -> np.ndarray:
        """Record labels -> class indices (synthetic: the attribute of the combination)."""
        labels = np.asarray(labels)
        if not self.synthetic_attribute:
            return labels
        slot = ATTRIBUTES.index(self.synthetic_attribute)
        index = {name: i for i, name in enumerate(self.class_names)}
        return np.asarray([index[synthetic.COMBINATIONS[int(x)][slot]] for x in labels])


def synthetic_prompts(attribute: str) -> tuple[list[str], list[str]]:
    """Class names (the attribute's values) and templates (the first caption template
    rendered with every value of the other attributes, the class left as ``{}``)."""
    values = {
        "shape": list(synthetic.SHAPES),
        "colour": list(synthetic.COLOURS),
        "size": list(synthetic.SIZES),
        "where": list(synthetic.POSITIONS),
    }
    others = [a for a in ATTRIBUTES if a != attribute]
    templates = [
        synthetic.TEMPLATES[0].format(**{attribute: "{}"}, **dict(zip(others, combo, strict=True)))
        for combo in itertools.product(*(values[a] for a in others))
    ]
    return values[attribute], templates
