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

import dataclasses
import math
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from mmjax.data.mlm_masking import mask_tokens, masking_ids
from mmjax.data.tokenizer import load_tokenizer
from mmjax.data.transforms import normalize_images
from mmjax.evaluate import itm_accuracy, retrieval_metrics
from mmjax.losses import softmax_contrastive_loss, weighted_cross_entropy
from mmjax.models.fused import FusedModel, build_fused_model
from mmjax.models.heads import ClassifierHead, MLMHead, dense
from mmjax.models.towers import l2_normalize
from mmjax.tasks.contrastive import ContrastiveTask
from mmjax.temperature import MAX_LOGIT_SCALE

Batch = dict[str, jax.Array]
LOSS_NAMES = ("itc", "itm", "mlm")


def same_rows(tokens: jax.Array) -> jax.Array:
    """``[batch, seq]`` -> bool ``[batch, batch]``: rows i and j hold identical tokens."""
    return jnp.all(tokens[:, None, :] == tokens[None, :, :], axis=-1)


def sample_hard_negatives(
    rng: jax.Array, logits: jax.Array, exclude: jax.Array
) -> tuple[jax.Array, jax.Array, jax.Array, jax.Array]:
    """ALBEF's hard negatives from image-to-text similarity ``logits`` ``[batch, batch]``
    (temperature-scaled; row = image, column = text).

    ``exclude`` bool ``[batch, batch]`` marks (image i, text j) pairs that are not
    negatives: the diagonal and, e.g., texts identical to image i's caption. For each
    image a text is drawn with probability ``softmax(logits[i])`` restricted to the
    allowed texts, for each text an image with ``softmax(logits[:, j])`` restricted to
    the allowed images. No gradient flows through the draw.

    Returns ``(neg_text [batch], neg_image [batch], has_text [batch], has_image [batch])``:
    indices into the batch and whether a row had any allowed negative (a row without one
    gets its own index and must be weighted out).
    """
    logits = jax.lax.stop_gradient(logits.astype(jnp.float32))
    exclude = exclude.astype(bool)
    k_text, k_image = jax.random.split(rng)
    i2t = jnp.where(exclude, -jnp.inf, logits)
    t2i = jnp.where(exclude.T, -jnp.inf, logits.T)
    has_text = jnp.any(~exclude, axis=1)
    has_image = jnp.any(~exclude.T, axis=1)
    own = jnp.arange(logits.shape[0])
    neg_text = jnp.where(has_text, jax.random.categorical(k_text, i2t, axis=-1), own)
    neg_image = jnp.where(has_image, jax.random.categorical(k_image, t2i, axis=-1), own)
    return neg_text, neg_image, has_text, has_image


def next_distinct(exclude: jax.Array) -> tuple[jax.Array, jax.Array]:
    """For each row i, the first row ``j = i+1, i+2, ...`` (cyclically) not excluded by
    ``exclude`` bool ``[batch, batch]``: ``(index [batch], found [batch])``. The eval's
    deterministic ITM negative (the next record with another caption)."""
    n = exclude.shape[0]
    order = (jnp.arange(n)[:, None] + jnp.arange(1, n + 1)[None, :]) % n  # [batch, batch]
    allowed = ~jnp.take_along_axis(exclude, order, axis=1)
    first = jnp.argmax(allowed, axis=1)
    return order[jnp.arange(n), first], jnp.any(allowed, axis=1)


class ITMMLMModel(FusedModel):
    """A ``FusedModel`` (image tower, BERT-style text tower, cross-attention fusion with
    the text as query) plus the ITC / ITM / MLM heads.

    Params: ``image/``, ``text/``, ``fusion/`` (as ``FusedModel``), ``image_proj/``,
    ``text_proj/`` (ITC, to ``embed_dim``), ``logit_scale``, ``itm_head/`` (2-way, on the
    fused first token) and ``mlm_head/`` (its decoder is the text tower's ``word_embed``
    table, so the fusion ``width`` equals the text width).
    """

    embed_dim: int = 256
    logit_scale_init: float = math.log(1 / 0.07)
    mlm_act: str = "gelu"
    mlm_ln_eps: float = 1e-12

    def setup(self) -> None:
        super().setup()
        self.image_proj = dense(self.embed_dim, ("embed", "proj"), self.dtype, "image_proj")
        self.text_proj = dense(self.embed_dim, ("embed", "proj"), self.dtype, "text_proj")
        self.logit_scale = self.param(
            "logit_scale",
            nn.with_logical_partitioning(nn.initializers.constant(self.logit_scale_init), ()),
            (),
            jnp.float32,
        )
        self.itm_head = ClassifierHead(2, dtype=self.dtype)
        self.mlm_head = MLMHead(act=self.mlm_act, ln_eps=self.mlm_ln_eps, dtype=self.dtype)

    def encode_pairs(
        self,
        images: jax.Array,
        tokens: jax.Array,
        padding_mask: jax.Array,
        masked_tokens: jax.Array,
        deterministic: bool,
    ) -> dict[str, Any]:
        """The unimodal pass: ``encoded`` (``FusedModel.encode``'s dict), the masked
        captions' text tokens ``masked`` ``[batch, seq, wt]`` and the L2-normalized ITC
        embeddings ``image`` / ``text`` ``[batch, embed_dim]``.

        The text tower runs once on the captions and the masked captions stacked along the
        batch (``[2 * batch, seq]``): one copy of its graph to compile, bigger matmuls."""
        b = tokens.shape[0]
        inputs = {
            "image": images,
            "tokens": jnp.concatenate([tokens, masked_tokens]),
            "padding_mask": jnp.concatenate([padding_mask, padding_mask]),
        }
        encoded = self.encode(inputs, deterministic=deterministic)
        both = encoded["text"]
        encoded["text"] = {k: v[:b] for k, v in both.items()}
        return {
            "encoded": encoded,
            "masked": both["tokens"][b:],
            "image": l2_normalize(self.image_proj(encoded["image"]["pooled"])),
            "text": l2_normalize(self.text_proj(encoded["text"]["pooled"])),
        }

    def fuse_rows(
        self,
        encoded: dict[str, dict[str, jax.Array]],
        text_tokens: list[jax.Array],
        text_masks: list[jax.Array],
        image_rows: list[jax.Array],
        deterministic: bool,
    ) -> dict[str, jax.Array]:
        """One ``fuse`` over the pairs (``text_tokens[k]`` ``[batch, seq, wt]`` with mask
        ``text_masks[k]``, images ``encoded['image']`` re-indexed by ``image_rows[k]``
        ``[batch]``), concatenated along the batch: ``{'pooled': [rows, width],
        'tokens': [rows, seq, width], ...}``."""
        image = encoded["image"]
        rows = jnp.concatenate(image_rows)
        pairs = {
            "text": {
                "tokens": jnp.concatenate(text_tokens),
                "mask": jnp.concatenate(text_masks),
            },
            "image": {"tokens": image["tokens"][rows], "mask": image["mask"][rows]},
        }
        return self.fuse(pairs, deterministic=deterministic)

    def mlm_logits(self, fused_tokens: jax.Array) -> jax.Array:
        """``[rows, seq, width]`` -> ``[rows, seq, vocab]`` through the tied MLM head."""
        return self.mlm_head(fused_tokens, nn.unbox(self.text_embedding()))

    def pretrain(
        self,
        images: jax.Array,
        tokens: jax.Array,
        padding_mask: jax.Array,
        masked_tokens: jax.Array,
        negatives_rng: jax.Array,
        deterministic: bool = True,
        image_ids: jax.Array | None = None,
    ) -> dict[str, jax.Array]:
        """One training forward (see the module docstring). ``image_ids`` ``[batch]``
        (optional): rows of one image are never each other's hard negatives (another
        caption of the same image is a positive, not a negative).

        Returns ``image``/``text`` ``[batch, embed_dim]``, ``logit_scale``, ``itm_logits``
        ``[3 * batch, 2]`` (positives, (image, neg text), (neg image, text)),
        ``itm_weights`` ``[3 * batch]`` (0 for a row without a negative) and
        ``mlm_logits`` ``[batch, seq, vocab]``.
        """
        b = tokens.shape[0]
        padding_mask = jnp.asarray(padding_mask, bool)  # indexed by traced rows below
        enc = self.encode_pairs(images, tokens, padding_mask, masked_tokens, deterministic)
        scale = jnp.exp(jnp.minimum(self.logit_scale, math.log(100.0)))
        sim = scale * enc["image"] @ enc["text"].T  # [images, texts]
        exclude = same_rows(tokens)
        if image_ids is not None:
            exclude |= image_ids[:, None] == image_ids[None, :]
        neg_text, neg_image, has_text, has_image = sample_hard_negatives(
            negatives_rng, sim, exclude
        )
        txt = enc["encoded"]["text"]["tokens"]
        own = jnp.arange(b)
        fused = self.fuse_rows(
            enc["encoded"],
            [txt, txt[neg_text], txt, enc["masked"]],
            [padding_mask, padding_mask[neg_text], padding_mask, padding_mask],
            [own, own, neg_image, own],
            deterministic,
        )
        ones = jnp.ones((b,), jnp.float32)
        return {
            "image": enc["image"],
            "text": enc["text"],
            "logit_scale": self.logit_scale,
            "itm_logits": self.itm_head(fused["pooled"][: 3 * b]),
            "itm_weights": jnp.concatenate([ones, has_text, has_image]).astype(jnp.float32),
            "mlm_logits": self.mlm_logits(fused["tokens"][3 * b :]),
        }

    def evaluate(
        self,
        images: jax.Array,
        tokens: jax.Array,
        padding_mask: jax.Array,
        masked_tokens: jax.Array,
        negative: jax.Array,
    ) -> dict[str, jax.Array]:
        """Eval forward: ITC embeddings ``image`` / ``text``, ITM logits ``[batch, 2]`` of
        each pair (``itm_pos``) and of (image i, text of row ``negative[i]``)
        (``itm_neg``), and masked-LM logits ``[batch, seq, vocab]`` of the masked
        captions (``mlm_logits``)."""
        b = tokens.shape[0]
        padding_mask = jnp.asarray(padding_mask, bool)  # indexed by traced rows below
        enc = self.encode_pairs(images, tokens, padding_mask, masked_tokens, True)
        txt = enc["encoded"]["text"]["tokens"]
        own = jnp.arange(b)
        fused = self.fuse_rows(
            enc["encoded"],
            [txt, txt[negative], enc["masked"]],
            [padding_mask, padding_mask[negative], padding_mask],
            [own, own, own],
            True,
        )
        logits = self.itm_head(fused["pooled"][: 2 * b])
        return {
            "image": enc["image"],
            "text": enc["text"],
            "itm_pos": logits[:b],
            "itm_neg": logits[b:],
            "mlm_logits": self.mlm_logits(fused["tokens"][2 * b :]),
        }

    def __call__(  # type: ignore[override]
        self, images: jax.Array, tokens: jax.Array, padding_mask: jax.Array
    ) -> dict[str, jax.Array]:
        """Init entry point: the eval forward with each caption as its own negative."""
        return self.evaluate(images, tokens, padding_mask, tokens, jnp.arange(tokens.shape[0]))


def build_itm_mlm_model(cfg: Any) -> ITMMLMModel:
    """``ITMMLMModel`` from ``config.model`` (see ``configs/itm_mlm_synthetic.py``): the
    ``FusedModel`` of ``build_fused_model`` (an ``image`` tower, a ``text`` tower with
    ``kind='bert'``, ``fusion.kind='cross_attention'`` with ``fusion.width == text.width``)
    plus ``embed_dim`` / ``logit_scale_init`` for ITC."""
    if cfg.text.kind != "bert":
        raise ValueError(
            f"config.model.text.kind: itm_mlm needs a bidirectional 'bert' text encoder for "
            f"masked LM, got {cfg.text.kind!r}"
        )
    if cfg.text.get("pool", "cls") == "none":
        raise ValueError("config.model.text.pool: itm_mlm needs a pooled text output for ITC")
    if cfg.fusion.get("kind") != "cross_attention":
        raise ValueError(
            f"config.model.fusion.kind: itm_mlm needs 'cross_attention', "
            f"got {cfg.fusion.get('kind')!r}"
        )
    if cfg.fusion.width != cfg.text.width:
        raise ValueError(
            f"config.model.fusion.width ({cfg.fusion.width}) must equal config.model.text.width "
            f"({cfg.text.width}): the MLM decoder is tied to the text word embeddings"
        )
    if cfg.get("features"):
        raise ValueError("config.model.features: itm_mlm fuses only image and text")
    base = build_fused_model(cfg)
    fields = {
        f.name: getattr(base, f.name)
        for f in dataclasses.fields(FusedModel)
        if f.init and f.name not in ("parent", "name")
    }
    return ITMMLMModel(
        **fields,
        embed_dim=cfg.embed_dim,
        logit_scale_init=cfg.logit_scale_init,
        mlm_act=cfg.text.act,
        mlm_ln_eps=cfg.text.get("ln_eps") or 1e-12,
    )


class ITMMLMTask:
    """Model + ITC/ITM/MLM loss + eval (see the module docstring).

    A batch is ``{'image': uint8 [batch, H, W, 3], 'tokens': int32 [batch, seq],
    'padding_mask': bool [batch, seq]}`` (the default image-text example), optionally
    ``image_id`` ``[batch]`` for eval splits with several captions per image.

    Config: ``config.task.weights`` (``dict(itc=, itm=, mlm=)``), ``mlm_ratio`` (0.15),
    ``mask_token`` (``'[MASK]'``), ``special_tokens`` (token names never masked, besides
    the tokenizer's padding / end / flagged-special tokens), ``eval_mask_seed``.
    """

    def __init__(self, config: Any):
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
        tokenizer = load_tokenizer(config.data.tokenizer, config.model.text.context_length)
        self.masking = masking_ids(
            tokenizer,
            task.get("mask_token", "[MASK]"),
            tuple(task.get("special_tokens", ()) or ()),
        )
        if self.masking["vocab_size"] > config.model.text.vocab_size:
            raise ValueError(
                f"config.model.text.vocab_size is {config.model.text.vocab_size}, but tokenizer "
                f"{config.data.tokenizer!r} has {self.masking['vocab_size']} tokens"
            )
        self.model = build_itm_mlm_model(config.model)
        self.normalization = config.data.normalization
        self.image_size = config.model.image.image_size
        self.context_length = config.model.text.context_length

    # The same image-text batch as the contrastive task (reads image_size / context_length;
    # ITM towers take images, never video or audio, so no media kind).
    dummy_batch = ContrastiveTask.dummy_batch
    media = None
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

    def embed(self, params: Any, batch: Batch) -> dict[str, jax.Array]:
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
