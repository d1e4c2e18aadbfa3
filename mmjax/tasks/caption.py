"""Captioning (CoCa): teacher-forced next-token loss (+ optional contrastive loss); eval
generates captions greedily and with beam search under ``jax.jit`` and scores them.

Train loss: ``caption_weight * CE(next token) + contrastive_weight * InfoNCE``
(``config.task``; CoCa uses 2 and 1; ``contrastive_weight=0`` trains a captioner only).
The decoder reads the whole caption ``[BOS] w1 .. wn [EOS] [PAD]..`` and position ``i``
predicts token ``i + 1``; padded targets are masked. Because the decoder is causal this
equals feeding ``tokens[:-1]`` and predicting ``tokens[1:]``, and the same pass gives the
contrastive text embedding at the EOS token.

Eval (``eval_step`` under the train loop's ``jax.jit``; ``eval_metrics`` on the host): greedy and
beam captions ``[batch, max_decode_len]`` are decoded with the tokenizer and scored
against every reference of the image, both tokenized as COCO does (``caption_metrics``):
corpus BLEU-4 (COCO's, as a fraction) and CIDEr-D (pycocoevalcap) for each, and
recall@1/5 of the contrastive embeddings when trained with the contrastive loss. Each
image is scored once (rows deduplicated by ``image_id``).
References: for the synthetic source every caption the grammar gives the record's label
(all ``TEMPLATES`` filled with ``COMBINATIONS[label]``), carried by the eval batch as
``references`` ``[batch, len(TEMPLATES), length]`` token rows; for real data (COCO-style
records with a ``captions`` list, which the eval pipeline turns into one row per
caption, all with the record's ``image_id``) every caption of the image, gathered from the
rows' ``tokens``. Such an image's captions are generated once per row (the same
caption each time), which costs generation time, not correctness.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from mmjax.config import ConfigError
from mmjax.data import sources
from mmjax.data.pipeline import default_example
from mmjax.data.synthetic import COMBINATIONS, TEMPLATES
from mmjax.data.tokenizer import TextTokenizer
from mmjax.data.transforms import BadRecord, ExampleFn, normalize_images
from mmjax.evaluation.caption_metrics import bleu4, cider, cider_available
from mmjax.evaluation.evaluate import retrieval_metrics
from mmjax.losses import softmax_contrastive_loss, token_cross_entropy, weighted_mean
from mmjax.models.decoder import CoCa, build_coca
from mmjax.models.generate import beam_search, cached_step, greedy
from mmjax.tasks.base import BatchLossTask, register_task
from mmjax.train.temperature import MAX_LOGIT_SCALE

Batch = dict[str, jax.Array]


def synthetic_references(label: int) -> list[str]:
    """Every caption the synthetic grammar gives ``COMBINATIONS[label]``."""
    if not 0 <= label < len(COMBINATIONS):
        raise BadRecord(f"label {label} is not an index into synthetic COMBINATIONS")
    shape, colour, size, where = COMBINATIONS[label]
    return [t.format(size=size, colour=colour, shape=shape, where=where) for t in TEMPLATES]


class CaptionExample:
    """``ExampleFn`` of the caption task: the image-text example (``default_example``) and,
    for a synthetic eval record, ``references`` int32 ``[len(TEMPLATES), length]``: every
    caption the grammar gives its label."""

    def __init__(self, tokenizer: TextTokenizer, data_cfg: Any, train: bool):
        self.base = default_example(tokenizer, data_cfg, train)
        self.tokenizer = tokenizer
        self.references = not train and sources.is_shapes_world(data_cfg, "eval")

    def __call__(self, record: dict[str, Any], rng: np.random.Generator) -> dict[str, np.ndarray]:
        out = self.base(record, rng)
        if self.references:
            out["references"] = self.tokenizer(synthetic_references(int(record["label"])))[0]
        return out


@register_task("caption")
class CaptionTask(BatchLossTask):
    """Model (``CoCa``) + loss + generation eval for captioning.

    A batch is ``{'image': uint8 [batch, H, W, 3], 'tokens': int32 [batch, seq],
    'padding_mask': bool [batch, seq]}`` (+ ``references`` in eval).
    """

    # the train step clamps the contrastive temperature's param (CLIP)
    max_logit_scale = MAX_LOGIT_SCALE

    def __init__(self, config: Any):
        super().__init__(config)
        task = config.task
        self.caption_weight = float(task.get("caption_weight", 2.0))
        self.contrastive_weight = float(task.get("contrastive_weight", 1.0))
        if self.caption_weight <= 0 or self.contrastive_weight < 0:
            raise ConfigError(
                "config.task.caption_weight must be > 0 and contrastive_weight >= 0, got "
                f"{self.caption_weight} and {self.contrastive_weight}"
            )
        self.contrastive = self.contrastive_weight > 0
        self.model = build_coca(config.model, self.contrastive)
        text = config.model.text
        self.context_length = text.context_length
        self.bos_id, self.eos_id = int(text.bos_id), int(text.eos_id)
        self.pad_id = int(text.get("pad_id", 0))
        self.max_decode_len = int(task.get("max_decode_len", 0) or text.context_length)
        if not 2 <= self.max_decode_len <= text.context_length:
            raise ConfigError(
                f"config.task.max_decode_len ({self.max_decode_len}) must be in "
                f"[2, config.model.text.context_length={text.context_length}]"
            )
        self.beam_size = int(task.get("beam_size", 4))
        if self.beam_size < 1:
            raise ConfigError(f"config.task.beam_size must be >= 1, got {self.beam_size}")
        self.alpha = float(task.get("length_penalty", 0.0))
        self.print_examples = int(task.get("print_examples", 0))
        self.normalization = config.data.normalization
        self.image_size = config.model.image.image_size
        self.cache_batch_axis = 1 if config.model.get("scan_layers", False) else 0
        self._check_special_ids()

    def _check_special_ids(self) -> None:
        """The config's BOS/EOS/pad ids must be the tokenizer's (generation relies on them)."""
        ids, _ = self.tokenizer(["a"])
        found = {"bos_id": int(ids[0, 0]), "eos_id": self.tokenizer.eos_id}
        found["pad_id"] = self.tokenizer.pad_id
        for key, want in (
            ("bos_id", self.bos_id),
            ("eos_id", self.eos_id),
            ("pad_id", self.pad_id),
        ):
            if found[key] != want:
                raise ConfigError(
                    f"config.model.text.{key} is {want}, the tokenizer's is {found[key]}"
                )

    def make_example(self, data_cfg: Any, train: bool) -> ExampleFn:
        return CaptionExample(self.tokenizer, data_cfg, train)

    def init(self, rng: jax.Array) -> Any:
        """Boxed (logically partitioned) variables."""
        b = self.dummy_batch()
        return self.model.init(
            {"params": rng}, normalize_images(b["image"], self.normalization), b["tokens"]
        )

    def forward(
        self, params: Any, batch: Batch, rng: jax.Array, train: bool = True
    ) -> dict[str, jax.Array]:
        """Per-example outputs the loss needs: next-token ``token_ce``, ``token_correct``
        and ``token_weight`` (1 at real targets) fp32 ``[batch, seq - 1]``, and when
        contrastive ``image`` / ``text`` ``[batch, embed_dim]`` and ``logit_scale``.
        Token losses rather than logits: the accumulator holds these for the whole batch."""
        out = self.model.apply(
            {"params": params},
            normalize_images(batch["image"], self.normalization),
            batch["tokens"],
            deterministic=not train,
            rngs={"dropout": rng},
        )
        ce, correct = token_cross_entropy(out["logits"][:, :-1], batch["tokens"][:, 1:])
        result = {
            "token_ce": ce,
            "token_correct": correct,
            "token_weight": batch["padding_mask"][:, 1:].astype(jnp.float32),
        }
        if self.contrastive:
            result.update({k: out[k] for k in ("image", "text", "logit_scale")})
        return result

    def loss_from_outputs(
        self, out: dict[str, jax.Array]
    ) -> tuple[jax.Array, dict[str, jax.Array]]:
        """``caption_weight`` x the mean next-token CE over every real target of the batch
        (a token-count-weighted sum, so micro-batches combine exactly) + ``contrastive_weight``
        x InfoNCE over every pair of the batch."""
        caption_loss = weighted_mean(out["token_ce"], out["token_weight"])
        token_acc = weighted_mean(out["token_correct"], out["token_weight"])
        loss = self.caption_weight * caption_loss
        metrics = {"caption_loss": caption_loss, "token_acc": token_acc}
        if self.contrastive:
            con_loss, con_metrics = softmax_contrastive_loss(
                out["image"], out["text"], out["logit_scale"]
            )
            loss = loss + self.contrastive_weight * con_loss
            metrics.update(con_metrics, contrastive_loss=con_loss)
        return loss, metrics

    def generate(self, params: Any, images: jax.Array) -> dict[str, jax.Array]:
        """uint8 images ``[batch, H, W, 3]`` -> ``{'greedy', 'beam': int32 [batch,
        max_decode_len]}`` (BOS first, padding after EOS), ``'greedy_logp'`` / ``'beam_logp'``
        ``[batch]`` and, when contrastive, the ``'image'`` embedding ``[batch, dim]``."""
        enc = self.model.apply(
            {"params": params},
            normalize_images(images, self.normalization),
            method=CoCa.encode_image,
        )
        batch, k = images.shape[0], self.beam_size
        special = dict(bos_id=self.bos_id, eos_id=self.eos_id, pad_id=self.pad_id)
        greedy_ids, greedy_logp = greedy(
            *self._decoder_fns(params, enc["context"]),
            batch_size=batch,
            max_len=self.max_decode_len,
            **special,
        )
        beam_ids, beam_logp = beam_search(
            *self._decoder_fns(params, jnp.repeat(enc["context"], k, axis=0)),
            batch_size=batch,
            beam_size=k,
            max_len=self.max_decode_len,
            alpha=self.alpha,
            cache_batch_axis=self.cache_batch_axis,
            **special,
        )
        out = {
            "greedy": greedy_ids,
            "greedy_logp": greedy_logp,
            "beam": beam_ids,
            "beam_logp": beam_logp,
        }
        if self.contrastive:
            out["image"] = enc["image"]
        return out

    def _decoder_fns(self, params: Any, context: jax.Array) -> tuple[Any, Any]:
        """``(step_fn, zero cache)`` of the cached decoder on ``context`` ``[n, ctx, width]``."""

        def apply(cache: Any, tokens: jax.Array) -> tuple[jax.Array, Any]:
            variables = {"params": params} if cache is None else {"params": params, "cache": cache}
            logits, new = self.model.apply(
                variables, tokens, context, method=CoCa.decode_step, mutable=["cache"]
            )
            return logits, new["cache"]

        return cached_step(apply, context.shape[0], self.max_decode_len)

    def eval_step(self, params: Any, batch: Batch) -> dict[str, jax.Array]:
        """Eval: ``generate``'s outputs, the batch's ``tokens`` (references of real data),
        ``references`` and ``image_id`` when it has them, and when contrastive the
        ground-truth captions' ``'text'`` embeddings ``[batch, dim]``."""
        out = self.generate(params, batch["image"])
        out.update({k: batch[k] for k in ("tokens", "references", "image_id") if k in batch})
        if self.contrastive:
            out["text"] = self.model.apply(
                {"params": params}, batch["tokens"], method=CoCa.encode_text
            )
        return out

    def references(self, outputs: dict[str, np.ndarray]) -> tuple[np.ndarray, list[list[str]]]:
        """``(first row of each image [images], its reference captions)``: images by
        ``image_id`` (each row its own image without one); references from ``references``
        when the rows carry them, else every row's caption (``tokens``) of the image."""
        n = len(outputs["tokens"])
        image_ids = outputs.get("image_id", np.arange(n))
        _, first, owner = np.unique(image_ids, return_index=True, return_inverse=True)
        if "references" in outputs:
            return first, [self.tokenizer.decode(outputs["references"][i]) for i in first]
        refs: list[list[str]] = [[] for _ in first]
        for row, caption in enumerate(self.tokenizer.decode(outputs["tokens"])):
            refs[owner[row]].append(caption)
        return first, refs

    def eval_metrics(self, outputs: dict[str, np.ndarray]) -> dict[str, float]:
        """``bleu4`` / ``cider`` (greedy; CIDEr with the ``[eval]`` extra), ``bleu4_beam`` /
        ``cider_beam``, mean
        ``greedy_logp`` / ``beam_logp`` over images, and ``i2t_r1/5``, ``t2i_r1/5`` when
        contrastive."""
        first, refs = self.references(outputs)
        metrics = {}
        for kind, suffix in (("greedy", ""), ("beam", "_beam")):
            hyps = self.tokenizer.decode(outputs[kind][first])
            metrics[f"bleu4{suffix}"] = bleu4(hyps, refs)
            if cider_available():  # the [eval] extra
                metrics[f"cider{suffix}"] = cider(hyps, refs)
            metrics[f"{kind}_logp"] = float(np.mean(outputs[f"{kind}_logp"][first]))
            if kind == "greedy" and self.print_examples and jax.process_index() == 0:
                for hyp, rs in list(zip(hyps, refs, strict=True))[: self.print_examples]:
                    print(f"caption: {hyp!r}  (references: {rs!r})")
        if self.contrastive:
            metrics.update(
                retrieval_metrics(
                    outputs["image"], outputs["text"], ks=(1, 5), image_ids=outputs.get("image_id")
                )
            )
        return metrics
