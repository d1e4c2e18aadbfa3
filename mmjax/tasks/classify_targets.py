"""What a classify task predicts (``config.task.target``): one small strategy object per
target, holding everything that differs between them — the class count, a record's text
and target, the dummy target, the loss and the eval metrics. ``ClassifyTask`` holds one
and never branches on the target's name. See ``mmjax.tasks.classify`` for the targets.

A new target is a ``Target`` subclass with ``@TARGETS.register('name')`` and a
``from_config(task_cfg, synthetic)`` classmethod.
"""

from __future__ import annotations

import abc
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

from mmjax.config import ConfigError
from mmjax.data import synthetic_tasks
from mmjax.data.transforms import BadRecord, record_caption
from mmjax.evaluation.evaluate import zeroshot_accuracy
from mmjax.evaluation.vqa_metrics import normalize_answer, vqa_accuracy, vqa_answer_scores
from mmjax.registry import Registry

VQA_LOSSES = ("bce", "softmax")


def synthetic_label(record: dict[str, Any]) -> int:
    """The synthetic record's attribute combination (``synthetic_tasks.COMBINATIONS``)."""
    label = record.get("label")
    if not isinstance(label, (int, np.integer)) or not 0 <= label < len(
        synthetic_tasks.COMBINATIONS
    ):
        raise BadRecord(f"label {label!r} is not a synthetic attribute combination")
    return int(label)


def default_label_field(task_cfg: Any, synthetic: bool) -> str:
    """``config.task.label_field``; default the synthetic ``shape`` or a real ``label``."""
    return task_cfg.get("label_field", "shape" if synthetic else "label")


class Target(abc.ABC):
    """One classification target. ``num_classes`` logits per example; ``target`` rows are
    what ``text_and_target`` returns, batched."""

    num_classes: int
    needs_text_and_image = True  # False: any one modality will do (``label``)

    @classmethod
    @abc.abstractmethod
    def from_config(cls, task_cfg: Any, synthetic: bool) -> Target:
        """The target of ``config.task`` (``synthetic``: the data is the built-in shapes)."""

    @abc.abstractmethod
    def text_and_target(
        self, record: dict[str, Any], rng: np.random.Generator, with_text: bool
    ) -> tuple[str, Any, int]:
        """``(text, target, question type)`` of ``record`` (``''`` text when the model has
        no text encoder; question type -1 unless a synthetic VQA question); unusable
        records raise ``BadRecord``."""

    def dummy_target(self, batch_size: int) -> np.ndarray:
        """Zeros shaped like a batch's ``target``: int32 ``[batch]`` class indices."""
        return np.zeros((batch_size,), np.int32)

    def loss(self, logits: jax.Array, target: jax.Array) -> tuple[jax.Array, dict]:
        """Softmax cross-entropy of fp32 ``logits`` ``[batch, classes]`` and the train
        accuracy."""
        loss = optax.softmax_cross_entropy_with_integer_labels(logits, target).mean()
        return loss, {"train_acc": jnp.mean(jnp.argmax(logits, axis=-1) == target)}

    def eval_metrics(
        self, logits: np.ndarray, target: np.ndarray, question_type: np.ndarray
    ) -> dict[str, float]:
        """``acc`` over the eval split."""
        return {"acc": zeroshot_accuracy(logits, target)}


TARGETS: Registry[type[Target]] = Registry("classify target")


def build_target(task_cfg: Any, synthetic: bool) -> Target:
    """The ``Target`` named by ``config.task.target`` (default ``'vqa'``)."""
    name = task_cfg.get("target", "vqa")
    return TARGETS.get(name, key="config.task.target").from_config(task_cfg, synthetic)


def answer_vocabulary(spec: Any, synthetic: bool) -> tuple[str, ...]:
    """The VQA answers named by ``config.task.answers``: ``''`` = the synthetic set's
    (``synthetic_tasks.ANSWERS``), a list of strings, or a text file with one per line."""
    if not spec:
        if not synthetic:
            raise ConfigError(
                "config.task.answers: name the answer vocabulary (a list or a file with one "
                "answer per line); only the synthetic source has a built-in one"
            )
        return synthetic_tasks.ANSWERS
    if isinstance(spec, str):
        path = Path(spec)
        if not path.is_file():
            raise ConfigError(f"config.task.answers: no answer file at {path}")
        spec = [line for line in path.read_text().splitlines() if line.strip()]
    answers = tuple(normalize_answer(a) for a in spec)
    if len(set(answers)) != len(answers):
        raise ConfigError("config.task.answers: answers repeat after normalization")
    return answers


@TARGETS.register("vqa")
class VqaTarget(Target):
    """VQA over an answer vocabulary; ``target`` float32 ``[answers]`` soft scores."""

    def __init__(self, answers: tuple[str, ...], synthetic: bool, loss: str = "bce"):
        if loss not in VQA_LOSSES:
            raise ConfigError(f"config.task.vqa_loss: unknown {loss!r}; known: {VQA_LOSSES}")
        self.vqa_loss, self.synthetic = loss, synthetic
        self.answers = tuple(answers)
        # keys normalized as annotations are (answer_vocabulary does it too; idempotent)
        self.index = {normalize_answer(a): i for i, a in enumerate(answers)}
        self.num_classes = len(self.answers)

    @classmethod
    def from_config(cls, task_cfg: Any, synthetic: bool) -> VqaTarget:
        answers = answer_vocabulary(task_cfg.get("answers", ""), synthetic)
        return cls(answers, synthetic, task_cfg.get("vqa_loss", "bce"))

    def text_and_target(
        self, record: dict[str, Any], rng: np.random.Generator, with_text: bool
    ) -> tuple[str, Any, int]:
        if self.synthetic:
            question, answer, qtype = synthetic_tasks.synthetic_question(
                synthetic_label(record), rng
            )
            scores = np.zeros(len(self.index), np.float32)
            scores[self.index[normalize_answer(answer)]] = 1.0  # one certain answer
            return question, scores, qtype
        answers = record.get("answers")
        if not isinstance(answers, (list, tuple)) or not answers:
            raise BadRecord(f"no 'answers' list ({answers!r})")
        return record_caption(record, "question"), vqa_answer_scores(answers, self.index), -1

    def dummy_target(self, batch_size: int) -> np.ndarray:
        return np.zeros((batch_size, self.num_classes), np.float32)

    def loss(self, logits: jax.Array, target: jax.Array) -> tuple[jax.Array, dict]:
        """``'bce'``: sigmoid BCE against the soft scores, summed over answers; ``'softmax'``:
        CE against the scores normalized to sum 1. Metric: the predicted answer's score."""
        if self.vqa_loss == "bce":
            loss = optax.sigmoid_binary_cross_entropy(logits, target).sum(-1).mean()
        else:  # questions with no in-vocabulary answer have all-zero targets: no loss
            total = target.sum(-1, keepdims=True)
            loss = optax.softmax_cross_entropy(logits, target / jnp.maximum(total, 1e-9))
            loss = loss.mean()
        pred = jnp.argmax(logits, axis=-1)
        score = jnp.take_along_axis(target, pred[:, None], axis=-1)[:, 0]
        return loss, {"train_vqa_acc": score.mean()}

    def eval_metrics(
        self, logits: np.ndarray, target: np.ndarray, question_type: np.ndarray
    ) -> dict[str, float]:
        """``vqa_acc`` (+ ``vqa_acc_<type>`` per synthetic question type)."""
        pred = np.argmax(logits, axis=-1)
        metrics = {"vqa_acc": vqa_accuracy(pred, target)}
        for i, name in enumerate(synthetic_tasks.QUESTION_TYPES if self.synthetic else ()):
            at = question_type == i
            if np.any(at):
                metrics[f"vqa_acc_{name}"] = vqa_accuracy(pred[at], target[at])
        return metrics


@TARGETS.register("match")
class MatchTarget(Target):
    """Does the caption describe the image? int32 1 = matches, 0 = not."""

    num_classes = 2

    def __init__(
        self,
        synthetic: bool,
        label_field: str = "label",
        negative_rate: float = 0.5,
        negatives: str = "one_attribute",
    ):
        if not 0.0 <= negative_rate <= 1.0:
            raise ConfigError(f"config.task.negative_rate must be in [0, 1], got {negative_rate}")
        if negatives not in synthetic_tasks.NEGATIVES:
            raise ConfigError(
                f"config.task.negatives: unknown {negatives!r}; "
                f"known: {sorted(synthetic_tasks.NEGATIVES)}"
            )
        self.synthetic, self.label_field = synthetic, label_field
        self.negative_rate, self.negatives = negative_rate, negatives

    @classmethod
    def from_config(cls, task_cfg: Any, synthetic: bool) -> MatchTarget:
        return cls(
            synthetic,
            default_label_field(task_cfg, synthetic),
            float(task_cfg.get("negative_rate", 0.5)),
            task_cfg.get("negatives", "one_attribute"),
        )

    def text_and_target(
        self, record: dict[str, Any], rng: np.random.Generator, with_text: bool
    ) -> tuple[str, Any, int]:
        if self.synthetic:
            text, match = synthetic_tasks.matching_pair(
                record_caption(record),
                synthetic_label(record),
                rng,
                self.negative_rate,
                self.negatives,
            )
            return text, np.int32(match), -1
        return record_caption(record), class_field(record, self.label_field, 2), -1


@TARGETS.register("label")
class LabelTarget(Target):
    """The record's class: a synthetic attribute or a real int field."""

    needs_text_and_image = False

    def __init__(self, synthetic: bool, label_field: str, num_classes: int = 0):
        self.synthetic, self.label_field = synthetic, label_field
        self.num_classes = self._classes(num_classes)

    @classmethod
    def from_config(cls, task_cfg: Any, synthetic: bool) -> LabelTarget:
        field = default_label_field(task_cfg, synthetic)
        return cls(synthetic, field, task_cfg.get("num_classes", 0))

    def _classes(self, num_classes: int) -> int:
        """``config.task.num_classes``, checked against (or, when 0, taken from) the synthetic
        attribute's number of values."""
        if self.synthetic:
            try:
                want = synthetic_tasks.num_classes(self.label_field)
            except KeyError:
                raise ConfigError(
                    f"config.task.label_field: unknown synthetic field {self.label_field!r}; "
                    f"known: {[*synthetic_tasks.ATTRIBUTES, 'combination']}"
                ) from None
            if num_classes and num_classes != want:
                raise ConfigError(
                    f"config.task.num_classes is {num_classes}, but synthetic "
                    f"{self.label_field!r} has {want} classes"
                )
            return want
        if num_classes < 2:
            raise ConfigError(f"config.task.num_classes must be >= 2, got {num_classes}")
        return num_classes

    def text_and_target(
        self, record: dict[str, Any], rng: np.random.Generator, with_text: bool
    ) -> tuple[str, Any, int]:
        if self.synthetic:
            label = synthetic_label(record)
            cls = np.int32(synthetic_tasks.attribute_label(label, self.label_field))
        else:
            cls = class_field(record, self.label_field, self.num_classes)
        return (record_caption(record) if with_text else ""), cls, -1


def class_field(record: dict[str, Any], field: str, num_classes: int) -> np.int32:
    """``record[field]`` as a class index in ``[0, num_classes)``, else ``BadRecord``."""
    cls = record.get(field)
    if not isinstance(cls, (int, np.integer)) or not 0 <= cls < num_classes:
        raise BadRecord(f"{field} {cls!r} is not a class in [0, {num_classes})")
    return np.int32(cls)
