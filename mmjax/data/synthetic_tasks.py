"""Classification tasks over the synthetic shapes: questions, mismatched captions, labels.

A ``SyntheticShapes`` record ``{'image', 'caption', 'label'}`` names one attribute
combination ``COMBINATIONS[label] = (shape, colour, size, where)``. From it:

- ``synthetic_question``: a VQA question about one attribute (``QUESTIONS``) and its
  answer, e.g. ("where is the red circle ?", "at the top left");
- ``mismatched_caption``: a caption of a combination that differs in exactly one
  attribute (a hard negative for image-text matching);
- ``attribute_label``: the index of one attribute's value (plain classification).

Every random choice draws from the example's generator, which the pipeline seeds from
the record's position, so the same position always gives the same example.
"""

from __future__ import annotations

import numpy as np

from mmjax.data.synthetic import (
    COLOURS,
    COMBINATIONS,
    POSITIONS,
    QUESTIONS,
    SHAPES,
    SIZES,
    TEMPLATES,
)

# Attribute name -> its values, in the order of ``COMBINATIONS``' tuples.
ATTRIBUTES: dict[str, tuple[str, ...]] = {
    "shape": SHAPES,
    "colour": tuple(COLOURS),
    "size": tuple(SIZES),
    "where": tuple(POSITIONS),
}
# The VQA answer vocabulary: every value of every attribute (23 answers; positions
# are multi-word answers such as "at the top left").
ANSWERS: tuple[str, ...] = tuple(v for values in ATTRIBUTES.values() for v in values)
# Question type (the attribute asked for), by index: what ``question_type`` outputs hold.
QUESTION_TYPES: tuple[str, ...] = tuple(ATTRIBUTES)
# Answer index -> index of the question type it answers.
ANSWER_TYPE: np.ndarray = np.asarray(
    [i for i, values in enumerate(ATTRIBUTES.values()) for _ in values], np.int32
)


def attributes(label: int) -> dict[str, str]:
    """``{'shape', 'colour', 'size', 'where'}`` of ``COMBINATIONS[label]``."""
    if not 0 <= label < len(COMBINATIONS):
        raise ValueError(f"synthetic label {label} is not in [0, {len(COMBINATIONS)})")
    return dict(zip(ATTRIBUTES, COMBINATIONS[label], strict=True))


def combination_label(attrs: dict[str, str]) -> int:
    """The ``COMBINATIONS`` index of an attribute dict (inverse of ``attributes``)."""
    return COMBINATIONS.index(tuple(attrs[name] for name in ATTRIBUTES))


def synthetic_question(label: int, rng: np.random.Generator) -> tuple[str, str, int]:
    """A question about one attribute of ``COMBINATIONS[label]`` (type drawn uniformly):
    ``(question, answer, question_type index)``. The question names the other attributes
    it needs and never contains its answer."""
    qtype = int(rng.integers(len(QUESTION_TYPES)))
    attrs = attributes(label)
    return QUESTIONS[QUESTION_TYPES[qtype]].format(**attrs), attrs[QUESTION_TYPES[qtype]], qtype


def caption(attrs: dict[str, str], rng: np.random.Generator) -> str:
    """A caption of ``attrs`` in one of the caption ``TEMPLATES`` (drawn from ``rng``)."""
    return TEMPLATES[int(rng.integers(len(TEMPLATES)))].format(**attrs)


def mismatched_caption(label: int, rng: np.random.Generator) -> tuple[str, int]:
    """A caption of a combination that differs from ``COMBINATIONS[label]`` in exactly one
    attribute (attribute and new value drawn uniformly): ``(caption, its label)``."""
    attrs = attributes(label)
    name = QUESTION_TYPES[int(rng.integers(len(QUESTION_TYPES)))]
    others = [v for v in ATTRIBUTES[name] if v != attrs[name]]
    attrs[name] = others[int(rng.integers(len(others)))]
    return caption(attrs, rng), combination_label(attrs)


def random_caption(label: int, rng: np.random.Generator) -> tuple[str, int]:
    """A caption of a uniformly drawn other combination than ``COMBINATIONS[label]``
    (usually differing in several attributes): ``(caption, its label)``."""
    other = int(rng.integers(len(COMBINATIONS) - 1))
    other += other >= label  # skip the record's own combination
    return caption(attributes(other), rng), other


NEGATIVES = {"one_attribute": mismatched_caption, "random": random_caption}


def matching_pair(
    record_caption: str,
    label: int,
    rng: np.random.Generator,
    negative_rate: float = 0.5,
    negatives: str = "one_attribute",
) -> tuple[str, int]:
    """Image-text matching: with probability ``negative_rate`` the caption is replaced by a
    negative -> ``(caption, 0)``; otherwise ``(record_caption, 1)``. ``negatives``:
    ``'one_attribute'`` (``mismatched_caption``, hard) or ``'random'`` (``random_caption``)."""
    if negatives not in NEGATIVES:
        raise ValueError(f"unknown negatives {negatives!r}; known: {sorted(NEGATIVES)}")
    if rng.random() < negative_rate:
        return NEGATIVES[negatives](label, rng)[0], 0
    return record_caption, 1


def attribute_label(label: int, field: str) -> int:
    """Class index of ``field`` of ``COMBINATIONS[label]``: the value's index among
    ``ATTRIBUTES[field]``, or ``label`` itself for ``field='combination'``."""
    if field == "combination":
        return int(label)
    if field not in ATTRIBUTES:
        raise ValueError(
            f"unknown synthetic label field {field!r}; known: {[*ATTRIBUTES, 'combination']}"
        )
    return ATTRIBUTES[field].index(attributes(label)[field])


def num_classes(field: str) -> int:
    """How many classes ``attribute_label(., field)`` has."""
    return len(COMBINATIONS) if field == "combination" else len(ATTRIBUTES[field])


def vqa_prior_baselines(answer_ids: np.ndarray, question_types: np.ndarray) -> dict[str, float]:
    """Accuracy of answer priors that ignore the image, on questions with one right answer
    each (``answer_ids`` ``[n]`` into ``ANSWERS``, ``question_types`` ``[n]``):

    - ``majority``: always the most frequent answer;
    - ``type_prior``: the most frequent answer of the question's type (a blind model that
      reads the question can reach this);
    - ``type_uniform``: expected accuracy of a uniform guess among the answers of the
      question's type (mean of ``1 / #answers of its type``).
    """
    answer_ids = np.asarray(answer_ids)
    question_types = np.asarray(question_types)
    counts = np.bincount(answer_ids, minlength=len(ANSWERS))
    type_prior = 0
    for t in np.unique(question_types):
        type_prior += np.bincount(answer_ids[question_types == t], minlength=len(ANSWERS)).max()
    sizes = np.asarray([len(v) for v in ATTRIBUTES.values()], np.float64)
    return {
        "majority": float(counts.max() / len(answer_ids)),
        "type_prior": float(type_prior / len(answer_ids)),
        "type_uniform": float(np.mean(1.0 / sizes[question_types])),
    }
