"""Classification on a fused (or single-modality) encoder: VQA, image-text matching, labels.

``config.task = dict(name='classify', target=...)``:

- ``target='vqa'``: VQA as classification over an answer vocabulary with VQA v2 soft
  scores (an answer given by ``c`` annotators scores ``min(c / 3, 1)``). Real records carry
  ``question`` and ``answers`` (the annotators' answer strings) and ``config.task.answers``
  names the vocabulary (a list, or a text file with one answer per line); synthetic
  records get a question from ``mmjax.data.synthetic.QUESTIONS`` and a one-hot target over
  ``synthetic_tasks.ANSWERS``. Loss ``config.task.vqa_loss``: ``'bce'`` (the standard VQA
  loss: sigmoid binary cross-entropy against the soft scores, summed over answers) or
  ``'softmax'`` (cross-entropy against the scores normalized to sum 1). Metric ``vqa_acc``
  (and ``vqa_acc_<type>`` per synthetic question type).
- ``target='match'``: does the caption describe the image? Synthetic records keep their
  caption or, with probability ``config.task.negative_rate``, get a negative one (label 1 =
  matches, 0 = not): ``config.task.negatives='one_attribute'`` describes a combination
  that differs in exactly one attribute (hard: every attribute must be checked),
  ``'random'`` any other combination. Real records carry the 0/1 label under
  ``config.task.label_field``. Two-way softmax; metric ``acc``.
- ``target='label'``: the record's class (``config.task.label_field``: for synthetic data
  an attribute, ``shape`` / ``colour`` / ``size`` / ``where`` / ``combination``; for real
  data an int field), from the image, the caption, or both, whichever of
  ``config.model.image`` / ``config.model.text`` is set. Metric ``acc``. Freezing an encoder
  is a ``config.optim.rules`` entry such as ``('image/.*', None)``.

The model is ``mmjax.models.fused.FusedModel`` with a classifier head on its pooled
output (``config.task.head_hidden`` > 0: a hidden layer first, as VQA models use). The
fused model's params sit at the top of the tree (``image/...``, ``text/...``,
``fusion/...``) and the head's under ``head/``, so a contrastive checkpoint's towers load
with ``init_from`` and freezing rules read as for the two-tower models.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

from mmjax.config import ConfigError
from mmjax.data import synthetic_tasks
from mmjax.data.augment import make_image_fn
from mmjax.data.media import MediaInputs, WithMedia, dummy_media, media_kind
from mmjax.data.tokenizer import TextTokenizer
from mmjax.data.transforms import BadRecord, ImageFn, normalize_images, record_caption, record_image
from mmjax.evaluation.evaluate import zeroshot_accuracy
from mmjax.evaluation.vqa_metrics import normalize_answer, vqa_accuracy, vqa_answer_scores
from mmjax.models.fused import build_fused_model
from mmjax.models.heads import ClassifierHead, dense
from mmjax.models.layers import Dtype, activation, layer_norm
from mmjax.models.towers import build_image_encoder, build_text_encoder, dtype_from_name

Batch = dict[str, jax.Array]
TARGETS = ("vqa", "match", "label")
VQA_LOSSES = ("bce", "softmax")


class MlpClassifierHead(nn.Module):
    """``[batch, embed]`` -> ``dense(hidden)`` -> act -> LayerNorm -> logits
    ``[batch, num_classes]`` (the VQA classifier of bottom-up/top-down models)."""

    num_classes: int
    hidden: int
    act: str = "gelu"
    dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        h = activation(self.act)(dense(self.hidden, ("embed", "mlp"), self.dtype, "hidden")(x))
        h = layer_norm(1e-6, self.dtype, name="ln")(h)
        return dense(self.num_classes, ("mlp", None), self.dtype, "out")(h)


class FusedClassifier(nn.Module):
    """An encoder (or ``FusedModel``) + a head: inputs -> logits ``[batch, classes]``.

    Inputs as ``FusedModel.encode`` takes them (``'image'`` normalized ``[batch, H, W, 3]``,
    ``'tokens'`` / ``'padding_mask'`` ``[batch, seq]``, ``'features/<name>'``). With
    ``fused`` set, the head reads the fusion's pooled output and the fused model shares
    this module's scope (its params keep their paths: ``image/``, ``text/``, ``fusion/``);
    otherwise exactly one of ``image`` / ``text`` is set and the head reads its pooled
    output (params under ``image/`` or ``text/``). The head's params live under ``head/``.
    """

    num_classes: int
    fused: nn.Module | None = None
    image: nn.Module | None = None
    text: nn.Module | None = None
    head_hidden: int = 0
    head_act: str = "gelu"
    dtype: Dtype = jnp.float32

    def setup(self) -> None:
        if self.fused is not None:
            nn.share_scope(self, self.fused)
        if self.head_hidden:
            self.head = MlpClassifierHead(
                self.num_classes, self.head_hidden, self.head_act, self.dtype
            )
        else:
            self.head = ClassifierHead(self.num_classes, self.dtype)

    def __call__(self, inputs: dict[str, jax.Array], deterministic: bool = True) -> jax.Array:
        if self.fused is not None:
            pooled = self.fused(inputs, deterministic=deterministic)["pooled"]
        elif self.image is not None:
            pooled = self.image(inputs["image"], deterministic=deterministic)["pooled"]
        else:
            mask = inputs["padding_mask"]
            pooled = self.text(inputs["tokens"], mask, deterministic=deterministic)["pooled"]
        return self.head(pooled).astype(jnp.float32)  # fp32 logits for the loss


def build_classifier(model_cfg: Any, num_classes: int, head_hidden: int = 0) -> FusedClassifier:
    """``FusedClassifier`` from ``config.model``: the fused model when both (or more)
    modalities are set, else the one encoder of ``model.image`` / ``model.text``."""
    dtype = dtype_from_name(model_cfg.get("dtype", "float32"))
    kw = dict(num_classes=num_classes, head_hidden=head_hidden, dtype=dtype)
    image_cfg, text_cfg = model_cfg.get("image"), model_cfg.get("text")
    if (image_cfg is None) == (text_cfg is None) or model_cfg.get("features"):
        return FusedClassifier(fused=build_fused_model(model_cfg), **kw)
    impl = model_cfg.get("attention_impl") or None
    memory = dict(
        remat=model_cfg.get("remat", "none"), scan_layers=bool(model_cfg.get("scan_layers", False))
    )
    if image_cfg is not None:
        return FusedClassifier(image=build_image_encoder(image_cfg, dtype, impl, **memory), **kw)
    return FusedClassifier(text=build_text_encoder(text_cfg, dtype, impl, **memory), **kw)


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


class ClassifyExample:
    """Record -> ``{'image' uint8 [H, W, 3], 'tokens' int32 [seq], 'padding_mask' bool [seq],
    'target', 'question_type' int32}`` (an ``ExampleFn``; image / text only when the model
    has that encoder).

    ``target`` is float32 ``[answers]`` VQA soft scores for ``'vqa'`` (``question_type`` the
    synthetic question type, -1 for real records) and an int32 class otherwise. The text is
    the question (``'vqa'``) or the caption. Unusable records raise ``BadRecord``.
    """

    def __init__(
        self,
        target: str,
        tokenizer: TextTokenizer | None,
        image_fn: ImageFn | None,
        *,
        synthetic: bool,
        answers: tuple[str, ...] = (),
        label_field: str = "label",
        num_classes: int = 0,
        negative_rate: float = 0.5,
        negatives: str = "one_attribute",
        use_image: bool = True,
    ):
        self.target = target
        self.tokenizer = tokenizer  # None: no text encoder, no text inputs
        self.image_fn = image_fn
        self.use_image = use_image  # False: no image encoder, no image inputs
        self.synthetic = synthetic
        # keys normalized as annotations are (answer_vocabulary does it too; idempotent)
        self.answers = {normalize_answer(a): i for i, a in enumerate(answers)}
        self.label_field = label_field
        self.num_classes = num_classes
        self.negative_rate = negative_rate
        self.negatives = negatives

    def _synthetic_label(self, record: dict[str, Any]) -> int:
        label = record.get("label")
        if not isinstance(label, (int, np.integer)) or not 0 <= label < len(
            synthetic_tasks.COMBINATIONS
        ):
            raise BadRecord(f"label {label!r} is not a synthetic attribute combination")
        return int(label)

    def _text_and_target(
        self, record: dict[str, Any], rng: np.random.Generator
    ) -> tuple[str, Any, int]:
        """``(text, target, question type)`` of ``record``."""
        if self.target == "vqa":
            if self.synthetic:
                question, answer, qtype = synthetic_tasks.synthetic_question(
                    self._synthetic_label(record), rng
                )
                scores = np.zeros(len(self.answers), np.float32)
                scores[self.answers[normalize_answer(answer)]] = 1.0  # one certain answer
                return question, scores, qtype
            answers = record.get("answers")
            if not isinstance(answers, (list, tuple)) or not answers:
                raise BadRecord(f"no 'answers' list ({answers!r})")
            return record_caption(record, "question"), vqa_answer_scores(answers, self.answers), -1
        if self.target == "match" and self.synthetic:
            label = self._synthetic_label(record)
            text, match = synthetic_tasks.matching_pair(
                record_caption(record), label, rng, self.negative_rate, self.negatives
            )
            return text, np.int32(match), -1
        if self.synthetic:
            label = self._synthetic_label(record)
            cls = synthetic_tasks.attribute_label(label, self.label_field)
        else:
            cls = record.get(self.label_field)
        if not isinstance(cls, (int, np.integer)) or not 0 <= cls < self.num_classes:
            raise BadRecord(f"{self.label_field} {cls!r} is not a class in [0, {self.num_classes})")
        text = record_caption(record) if self.tokenizer is not None else ""
        return text, np.int32(cls), -1

    def __call__(self, record: dict[str, Any], rng: np.random.Generator) -> dict[str, np.ndarray]:
        text, target, qtype = self._text_and_target(record, rng)
        out: dict[str, np.ndarray] = {"target": target, "question_type": np.int32(qtype)}
        if self.use_image:
            out["image"] = record_image(record, self.image_fn, rng)
        if self.tokenizer is not None:
            ids, mask = self.tokenizer([text])
            out["tokens"], out["padding_mask"] = ids[0], mask[0]
        return out


class ClassifyTask:
    """Model + loss + eval for ``config.task.target`` in ``TARGETS`` (see the module doc).

    A batch holds ``image`` uint8 ``[batch, H, W, 3]`` (with an image encoder), ``tokens``
    int32 / ``padding_mask`` bool ``[batch, seq]`` (with a text encoder), ``target``
    (float32 ``[batch, answers]`` for VQA, int32 ``[batch]`` otherwise) and
    ``question_type`` int32 ``[batch]``.
    """

    def __init__(self, config: Any):
        task = config.task
        self.target = task.get("target", "vqa")
        if self.target not in TARGETS:
            raise ConfigError(f"config.task.target: unknown {self.target!r}; known: {TARGETS}")
        self.vqa_loss = task.get("vqa_loss", "bce")
        if self.vqa_loss not in VQA_LOSSES:
            raise ConfigError(
                f"config.task.vqa_loss: unknown {self.vqa_loss!r}; known: {VQA_LOSSES}"
            )
        self.synthetic = config.data.source == "synthetic"
        self.label_field = task.get("label_field", "shape" if self.synthetic else "label")
        self.negative_rate = float(task.get("negative_rate", 0.5))
        if not 0.0 <= self.negative_rate <= 1.0:
            raise ConfigError(
                f"config.task.negative_rate must be in [0, 1], got {self.negative_rate}"
            )
        self.negatives = task.get("negatives", "one_attribute")
        if self.negatives not in synthetic_tasks.NEGATIVES:
            raise ConfigError(
                f"config.task.negatives: unknown {self.negatives!r}; "
                f"known: {sorted(synthetic_tasks.NEGATIVES)}"
            )
        self.answers: tuple[str, ...] = ()
        if self.target == "vqa":
            self.answers = answer_vocabulary(task.get("answers", ""), self.synthetic)
            self.num_classes = len(self.answers)
        elif self.target == "match":
            self.num_classes = 2
        else:
            self.num_classes = self._label_classes(task.get("num_classes", 0))

        image_cfg, text_cfg = config.model.get("image"), config.model.get("text")
        if image_cfg is None and text_cfg is None:
            raise ConfigError("config.model: set model.image, model.text or both")
        # video / audio modalities of the fused model (config.model.features.<name>.kind)
        self.media = {
            name: f for name, f in (config.model.get("features") or {}).items() if media_kind(f)
        }
        if (image_cfg is None and not self.media or text_cfg is None) and self.target != "label":
            raise ConfigError(
                f"config.task.target={self.target!r} needs model.text and model.image (or a "
                "video / audio modality in model.features)"
            )
        self.image_size = image_cfg["image_size"] if image_cfg is not None else 0
        self.context_length = text_cfg["context_length"] if text_cfg is not None else 0
        self.normalization = config.data.normalization
        self.model = build_classifier(
            config.model, self.num_classes, int(task.get("head_hidden", 0))
        )

    def _label_classes(self, num_classes: int) -> int:
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

    # -- data -------------------------------------------------------------------------------

    def make_example(self, tokenizer: TextTokenizer, data_cfg: Any, train: bool) -> Any:
        example = self._example(tokenizer, data_cfg, train)
        if not self.media:
            return example
        media = {n: MediaInputs(media_kind(f), data_cfg, train) for n, f in self.media.items()}
        return WithMedia(example, media)

    def _example(self, tokenizer: TextTokenizer, data_cfg: Any, train: bool) -> ClassifyExample:
        return ClassifyExample(
            self.target,
            tokenizer if self.context_length else None,
            make_image_fn(data_cfg, train),
            synthetic=self.synthetic,
            answers=self.answers,
            label_field=self.label_field,
            num_classes=self.num_classes,
            negative_rate=self.negative_rate,
            negatives=self.negatives,
            use_image=bool(self.image_size),
        )

    def dummy_batch(self, batch_size: int = 1) -> Batch:
        batch: Batch = {"question_type": jnp.zeros((batch_size,), jnp.int32)}
        if self.target == "vqa":
            batch["target"] = jnp.zeros((batch_size, self.num_classes), jnp.float32)
        else:
            batch["target"] = jnp.zeros((batch_size,), jnp.int32)
        if self.image_size:
            n = self.image_size
            batch["image"] = jnp.zeros((batch_size, n, n, 3), jnp.uint8)
        if self.context_length:
            batch["tokens"] = jnp.zeros((batch_size, self.context_length), jnp.int32)
            batch["padding_mask"] = jnp.ones((batch_size, self.context_length), bool)
        for name, f in self.media.items():
            media = dummy_media(media_kind(f), f, batch_size, "features/", name)
            batch.update({k: jnp.asarray(v) for k, v in media.items()})
        return batch

    def inputs(self, batch: Batch) -> dict[str, jax.Array]:
        """The model's inputs from a batch: images normalized, text and ``features/*`` as is."""
        inputs = {k: v for k, v in batch.items() if k.startswith("features/")}
        for k, v in inputs.items():  # a video modality's frames: uint8 pixels, as images
            if v.dtype == jnp.uint8:
                inputs[k] = normalize_images(v, self.normalization)
        if self.image_size:
            inputs["image"] = normalize_images(batch["image"], self.normalization)
        if self.context_length:
            inputs["tokens"], inputs["padding_mask"] = batch["tokens"], batch["padding_mask"]
        return inputs

    # -- model, loss, eval ------------------------------------------------------------------

    def init(self, rng: jax.Array) -> Any:
        """Boxed (logically partitioned) variables."""
        return self.model.init({"params": rng}, self.inputs(self.dummy_batch()))

    def logits(self, params: Any, batch: Batch, rng: jax.Array | None = None) -> jax.Array:
        """fp32 ``[batch, classes]``; dropout on when ``rng`` is given."""
        return self.model.apply(
            {"params": params},
            self.inputs(batch),
            deterministic=rng is None,
            rngs={"dropout": rng} if rng is not None else {},
        )

    def loss(
        self, params: Any, batch: Batch, rng: jax.Array, train: bool = True
    ) -> tuple[jax.Array, dict[str, jax.Array]]:
        logits = self.logits(params, batch, rng if train else None)
        target = batch["target"]
        if self.target == "vqa":
            if self.vqa_loss == "bce":
                loss = optax.sigmoid_binary_cross_entropy(logits, target).sum(-1).mean()
            else:  # questions with no in-vocabulary answer have all-zero targets: no loss
                total = target.sum(-1, keepdims=True)
                loss = optax.softmax_cross_entropy(logits, target / jnp.maximum(total, 1e-9))
                loss = loss.mean()
            pred = jnp.argmax(logits, axis=-1)
            score = jnp.take_along_axis(target, pred[:, None], axis=-1)[:, 0]
            return loss, {"train_vqa_acc": score.mean()}
        loss = optax.softmax_cross_entropy_with_integer_labels(logits, target).mean()
        return loss, {"train_acc": jnp.mean(jnp.argmax(logits, axis=-1) == target)}

    def embed(self, params: Any, batch: Batch) -> dict[str, jax.Array]:
        """Eval forward: ``{'logits': [batch, classes], 'target', 'question_type'}``."""
        return {
            "logits": self.logits(params, batch),
            "target": batch["target"],
            "question_type": batch["question_type"],
        }

    def eval_metrics(self, outputs: dict[str, np.ndarray]) -> dict[str, float]:
        """``vqa_acc`` (+ ``vqa_acc_<type>`` for synthetic question types), or ``acc``."""
        logits, target = outputs["logits"], outputs["target"]
        if self.target != "vqa":
            return {"acc": zeroshot_accuracy(logits, target)}
        pred = np.argmax(logits, axis=-1)
        metrics = {"vqa_acc": vqa_accuracy(pred, target)}
        qtype = outputs["question_type"]
        for i, name in enumerate(synthetic_tasks.QUESTION_TYPES if self.synthetic else ()):
            if np.any(qtype == i):
                metrics[f"vqa_acc_{name}"] = vqa_accuracy(pred[qtype == i], target[qtype == i])
        return metrics
