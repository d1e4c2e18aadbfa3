"""ALBEF/BLIP-style pretraining: image-text contrastive (ITC) + image-text matching (ITM)
with hard negatives + masked language modelling (MLM) through a cross-attention fusion
encoder; eval: ITC retrieval, ITM accuracy and MLM accuracy on the held-out split.

One train step (``ITMMLMTask.loss``):

1. The image tower and the (bidirectional, BERT-style) text tower encode the batch once;
   their pooled outputs are projected and L2-normalized for the softmax contrastive loss
   (``losses.softmax_contrastive_loss``, the global batch's pairs).
2. Hard negatives (ALBEF): for each image one text of the batch is drawn with
   probability ``softmax(sim_i2t)`` over the texts that are not its caption (nor an
   identical text, nor, when the batch carries ``image_id``, another caption of the same
   image), and for each text one image likewise (``sample_hard_negatives``); the sampling
   weights carry no gradient.
3. The fusion encoder (text tokens attend to image tokens) runs once on ``4 * batch`` rows
   built by re-indexing the encoded tokens: the ``batch`` positive pairs, ``batch``
   (image, negative text) and ``batch`` (negative image, text) pairs, which feed the 2-way
   ITM head on the fused first token, and the ``batch`` (masked text, image) pairs, whose
   fused tokens feed the MLM head tied to the text tower's word embeddings.
4. ``loss = w_itc * itc + w_itm * itm + w_mlm * mlm`` (``config.task.weights``).

Gradient accumulation (``config.optim.accum_steps``) averages micro-batches, so hard
negatives and contrastive pairs then come from each micro-batch.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from mmjax.data.mlm_masking import mask_tokens, masking_ids
from mmjax.data.transforms import normalize_images
from mmjax.evaluation.evaluate import itm_accuracy, retrieval_metrics
from mmjax.losses import softmax_contrastive_loss, weighted_cross_entropy
from mmjax.models.itm_mlm import ITMMLMModel, build_itm_mlm_model, next_distinct, same_rows
from mmjax.tasks.base import Task, register_task
from mmjax.train.temperature import MAX_LOGIT_SCALE

Batch = dict[str, jax.Array]
LOSS_NAMES = ("itc", "itm", "mlm")


@register_task("itm_mlm")
class ITMMLMTask(Task):
    """Model + ITC/ITM/MLM loss + eval (see the module docstring).

    A batch is ``{'image': uint8 [batch, H, W, 3], 'tokens': int32 [batch, seq],
    'padding_mask': bool [batch, seq]}`` (the default image-text example), optionally
    ``image_id`` ``[batch]`` for eval splits with several captions per image.

    Config: ``config.task.weights`` (``dict(itc=, itm=, mlm=)``), ``mlm_ratio`` (0.15),
    ``mask_token`` (``'[MASK]'``), ``special_tokens`` (token names never masked, besides
    the tokenizer's padding / end / flagged-special tokens), ``eval_mask_seed``.
    """

    def __init__(self, config: Any):
        super().__init__(config)
        task = config.task
        weights = dict(task.get("weights", {}) or {})
        unknown = set(weights) - set(LOSS_NAMES)
        if unknown:
            raise ValueError(
                f"config.task.weights: unknown losses {sorted(unknown)}; known: {LOSS_NAMES}"
            )
        self.weights = {name: float(weights.get(name, 1.0)) for name in LOSS_NAMES}
        self.mlm_ratio = float(task.get("mlm_ratio", 0.15))
        if not 0.0 < self.mlm_ratio < 1.0:
            raise ValueError(f"config.task.mlm_ratio must be in (0, 1), got {self.mlm_ratio}")
        self.eval_mask_seed = int(task.get("eval_mask_seed", 0))
        self.masking = masking_ids(  # the tokenizer's size is checked against the model's
            self.tokenizer,
            task.get("mask_token", "[MASK]"),
            tuple(task.get("special_tokens", ()) or ()),
        )
        self.model = build_itm_mlm_model(config.model)
        self.normalization = config.data.normalization
        self.image_size = config.model.image.image_size
        self.context_length = config.model.text.context_length

    # The train step clamps the ITC temperature's param at log 100 (CLIP, ALBEF's cap).
    max_logit_scale = MAX_LOGIT_SCALE
    # Why optim.accum_steps > 1 is not the full batch's update (the train loop warns).
    inexact_accumulation = (
        "ITM hard negatives are sampled within each micro-batch and the ITC/ITM/MLM losses "
        "are averaged over micro-batches, so the update differs from the full batch's"
    )

    def init(self, rng: jax.Array) -> Any:
        """Boxed (logically partitioned) variables."""
        b = self.dummy_batch(2)
        return self.model.init(
            {"params": rng},
            normalize_images(b["image"], self.normalization),
            b["tokens"],
            b["padding_mask"],
        )

    def mask(self, rng: jax.Array, batch: Batch) -> tuple[jax.Array, jax.Array, jax.Array]:
        """``mask_tokens`` on the batch's captions with the configured ids and ratio."""
        return mask_tokens(
            rng, batch["tokens"], batch["padding_mask"], ratio=self.mlm_ratio, **self.masking
        )

    def loss(
        self, params: Any, batch: Batch, rng: jax.Array, train: bool = True
    ) -> tuple[jax.Array, dict[str, jax.Array]]:
        """``w_itc * itc + w_itm * itm + w_mlm * mlm`` and the metrics: each loss,
        ``itm_acc`` (over the positive and hard-negative pairs), ``mlm_acc`` (masked
        tokens), the temperature and in-batch contrastive accuracies."""
        k_mask, k_neg, k_drop = jax.random.split(rng, 3)
        masked, targets, mlm_w = self.mask(k_mask, batch)
        out = self.model.apply(
            {"params": params},
            normalize_images(batch["image"], self.normalization),
            batch["tokens"],
            batch["padding_mask"],
            masked,
            k_neg,
            deterministic=not train,
            image_ids=batch.get("image_id"),
            rngs={"dropout": k_drop},
            method=ITMMLMModel.pretrain,
        )
        itc, metrics = softmax_contrastive_loss(out["image"], out["text"], out["logit_scale"])
        b = batch["tokens"].shape[0]
        itm_labels = jnp.concatenate([jnp.ones((b,), jnp.int32), jnp.zeros((2 * b,), jnp.int32)])
        itm, itm_acc = weighted_cross_entropy(out["itm_logits"], itm_labels, out["itm_weights"])
        mlm, mlm_acc = weighted_cross_entropy(out["mlm_logits"], targets, mlm_w)
        w = self.weights
        total = w["itc"] * itc + w["itm"] * itm + w["mlm"] * mlm
        metrics.update(
            itc_loss=itc,
            itm_loss=itm,
            mlm_loss=mlm,
            itm_acc=itm_acc,
            mlm_acc=mlm_acc,
            mlm_masked_fraction=jnp.sum(mlm_w) / jnp.maximum(jnp.sum(batch["padding_mask"]), 1),
        )
        return total, metrics

    def eval_step(self, params: Any, batch: Batch) -> dict[str, jax.Array]:
        """Eval forward: ``image``/``text`` ``[batch, embed_dim]`` (ITC), ``itm_pos`` /
        ``itm_neg`` ``[batch, 2]`` (each pair; the image with the next row's different
        caption, of another ``image_id`` when the batch has them), ``mlm_pred``,
        ``mlm_target``, ``mlm_weight`` ``[batch, seq]`` (captions masked with the fixed
        ``config.task.eval_mask_seed``), and ``image_id`` when the batch has it."""
        tokens = batch["tokens"]
        exclude = same_rows(tokens)
        if "image_id" in batch:
            exclude |= batch["image_id"][:, None] == batch["image_id"][None, :]
        negative, found = next_distinct(exclude)
        masked, targets, mlm_w = self.mask(jax.random.PRNGKey(self.eval_mask_seed), batch)
        out = self.model.apply(
            {"params": params},
            normalize_images(batch["image"], self.normalization),
            tokens,
            batch["padding_mask"],
            masked,
            negative,
            method=ITMMLMModel.evaluate,
        )
        result = {
            "image": out["image"],
            "text": out["text"],
            "itm_pos": out["itm_pos"],
            "itm_neg": out["itm_neg"],
            "itm_neg_found": found,
            "mlm_pred": jnp.argmax(out["mlm_logits"], axis=-1).astype(jnp.int32),
            "mlm_target": targets,
            "mlm_weight": mlm_w,
        }
        if "image_id" in batch:
            result["image_id"] = batch["image_id"]
        return result

    def eval_metrics(self, outputs: dict[str, np.ndarray]) -> dict[str, float]:
        """Recall@1/5/10 both ways (ITC), ``itm_acc`` (balanced, chance 0.5), ``mlm_acc``
        and ``mlm_majority_acc`` (always predicting the most frequent masked token of the
        split, the baseline ``mlm_acc`` must beat)."""
        metrics = retrieval_metrics(
            outputs["image"], outputs["text"], ks=(1, 5, 10), image_ids=outputs.get("image_id")
        )
        found = np.asarray(outputs["itm_neg_found"], bool)
        metrics["itm_acc"] = itm_accuracy(outputs["itm_pos"][found], outputs["itm_neg"][found])
        selected = np.asarray(outputs["mlm_weight"]) > 0
        targets = np.asarray(outputs["mlm_target"])[selected]
        preds = np.asarray(outputs["mlm_pred"])[selected]
        if targets.size:
            metrics["mlm_acc"] = float(np.mean(preds == targets))
            metrics["mlm_majority_acc"] = float(np.max(np.bincount(targets)) / targets.size)
        return metrics
