"""Classification on a fused (or single-modality) encoder: VQA, image-text matching, labels.

``config.task = dict(name='classify', target=...)``:

- ``target='vqa'``: VQA as classification over an answer vocabulary with VQA v2 soft
  scores (an answer given by ``c`` of 10 annotators scores the official leave-one-out
  accuracy, else ``min(c / min(n, 3), 1)`` of ``n``: ``evaluation/vqa_metrics``). Real records carry
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

Each target is a strategy object (``mmjax.tasks.classify_targets``). The model
(``mmjax.models.classifier``) is ``mmjax.models.fused.FusedModel`` with a classifier head
on its pooled output (``config.task.head_hidden`` > 0: a hidden layer first, as VQA models use). The
fused model's params sit at the top of the tree (``image/...``, ``text/...``,
``fusion/...``) and the head's under ``head/``, so a contrastive checkpoint's towers load
with ``init_from`` and freezing rules read as for the two-tower models.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from mmjax.config import ConfigError
from mmjax.data import sources
from mmjax.data.augment import make_image_fn
from mmjax.data.media import MediaInputs, WithMedia, dummy_media, media_kind
from mmjax.data.tokenizer import TextTokenizer
from mmjax.data.transforms import ImageFn, normalize_images, record_image
from mmjax.models.classifier import build_classifier
from mmjax.tasks.base import Task, register_task
from mmjax.tasks.classify_targets import Target, build_target

Batch = dict[str, jax.Array]


class ClassifyExample:
    """Record -> ``{'image' uint8 [H, W, 3], 'tokens' int32 [seq], 'padding_mask' bool [seq],
    'target', 'question_type' int32}`` (an ``ExampleFn``; image / text only when the model
    has that encoder).

    ``target`` and the text come from ``target.text_and_target``: float32 ``[answers]`` VQA
    soft scores (``question_type`` the synthetic question type, -1 for real records) and the
    question, or an int32 class and the caption. Unusable records raise ``BadRecord``.
    """

    def __init__(
        self,
        target: Target,
        tokenizer: TextTokenizer | None,
        image_fn: ImageFn | None,
        use_image: bool = True,
    ):
        self.target = target
        self.tokenizer = tokenizer  # None: no text encoder, no text inputs
        self.image_fn = image_fn
        self.use_image = use_image  # False: no image encoder, no image inputs

    def __call__(self, record: dict[str, Any], rng: np.random.Generator) -> dict[str, np.ndarray]:
        text, target, qtype = self.target.text_and_target(
            record, rng, with_text=self.tokenizer is not None
        )
        out: dict[str, np.ndarray] = {"target": target, "question_type": np.int32(qtype)}
        if self.use_image:
            out["image"] = record_image(record, self.image_fn, rng)
        if self.tokenizer is not None:
            ids, mask = self.tokenizer([text])
            out["tokens"], out["padding_mask"] = ids[0], mask[0]
        return out


@register_task("classify")
class ClassifyTask(Task):
    """Model + loss + eval for ``config.task.target`` (see the module doc).

    A batch holds ``image`` uint8 ``[batch, H, W, 3]`` (with an image encoder), ``tokens``
    int32 / ``padding_mask`` bool ``[batch, seq]`` (with a text encoder), ``target``
    (float32 ``[batch, answers]`` for VQA, int32 ``[batch]`` otherwise) and
    ``question_type`` int32 ``[batch]``.
    """

    def __init__(self, config: Any):
        super().__init__(config)
        self.synthetic = sources.is_shapes_world(config.data, "train")
        self.target = build_target(config.task, self.synthetic)
        self.num_classes = self.target.num_classes
        image_cfg, text_cfg = config.model.get("image"), config.model.get("text")
        if image_cfg is None and text_cfg is None:
            raise ConfigError("config.model: set model.image, model.text or both")
        # video / audio modalities of the fused model (config.model.features.<name>.kind)
        self.media = {
            name: f for name, f in (config.model.get("features") or {}).items() if media_kind(f)
        }
        one_modality = image_cfg is None and not self.media or text_cfg is None
        if one_modality and self.target.needs_text_and_image:
            raise ConfigError(
                f"config.task.target={config.task.get('target', 'vqa')!r} needs model.text "
                "and model.image (or a video / audio modality in model.features)"
            )
        self.image_size = image_cfg["image_size"] if image_cfg is not None else 0
        self.context_length = text_cfg["context_length"] if text_cfg is not None else 0
        self.normalization = config.data.normalization
        self.model = build_classifier(
            config.model, self.num_classes, int(config.task.get("head_hidden", 0))
        )

    # -- data -------------------------------------------------------------------------------

    def make_example(self, data_cfg: Any, train: bool) -> Any:
        example = ClassifyExample(
            self.target,
            self.tokenizer if self.context_length else None,
            make_image_fn(data_cfg, train),
            use_image=bool(self.image_size),
        )
        if not self.media:
            return example
        media = {n: MediaInputs(media_kind(f), data_cfg, train) for n, f in self.media.items()}
        return WithMedia(example, media)

    def dummy_extras(self, batch_size: int) -> dict[str, Any]:
        """``target``, ``question_type`` and the ``features/<name>`` media inputs."""
        extras: dict[str, Any] = {
            "question_type": np.zeros((batch_size,), np.int32),
            "target": self.target.dummy_target(batch_size),
        }
        for name, f in self.media.items():
            extras.update(dummy_media(media_kind(f), f, batch_size, "features/", name))
        return extras

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
        """The target's loss of the logits (``train_vqa_acc`` or ``train_acc``)."""
        return self.target.loss(self.logits(params, batch, rng if train else None), batch["target"])

    def eval_step(self, params: Any, batch: Batch) -> dict[str, jax.Array]:
        """Eval forward: ``{'logits': [batch, classes], 'target', 'question_type'}``."""
        return {
            "logits": self.logits(params, batch),
            "target": batch["target"],
            "question_type": batch["question_type"],
        }

    def eval_metrics(self, outputs: dict[str, np.ndarray]) -> dict[str, float]:
        """The target's metrics: ``vqa_acc`` (+ ``vqa_acc_<type>``) or ``acc``."""
        return self.target.eval_metrics(
            outputs["logits"], outputs["target"], outputs["question_type"]
        )
