"""Contrastive image-text pretraining (CLIP softmax or SigLIP sigmoid loss) and retrieval eval."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from mmjax.data.media import MediaInputs, MediaTextExample, dummy_media, media_kind
from mmjax.data.transforms import normalize_images
from mmjax.evaluation.evaluate import zeroshot_accuracy
from mmjax.evaluation.retrieval import retrieval_metrics_chunked
from mmjax.losses import LOSSES, sigmoid_contrastive_loss, softmax_contrastive_loss
from mmjax.models.towers import build_two_tower, l2_normalize
from mmjax.tasks.base import BatchLossTask, register_task
from mmjax.tasks.zeroshot import ZeroShotPrompts
from mmjax.train.temperature import MAX_LOGIT_SCALE

Batch = dict[str, jax.Array]


@register_task("contrastive")
class ContrastiveTask(BatchLossTask):
    """Model + loss + eval for two-tower contrastive training.

    A batch is ``{'image': uint8 [batch, H, W, 3], 'tokens': int32 [batch, seq],
    'padding_mask': bool [batch, seq]}``.
    """

    def __init__(self, config: Any):
        super().__init__(config)
        if config.task.loss not in LOSSES:
            raise ValueError(f"config.task.loss: unknown {config.task.loss!r}; known: {LOSSES}")
        self.loss_kind = config.task.loss
        # CLIP/open_clip clamp the softmax temperature's parameter at log 100 after each
        # update; big_vision's SigLIP leaves its sigmoid temperature unclamped.
        self.max_logit_scale = MAX_LOGIT_SCALE if self.loss_kind == "softmax" else None
        self.model = build_two_tower(config.model)
        self.normalization = config.data.normalization
        self.image_cfg = config.model.image
        self.context_length = config.model.text.context_length
        self.zeroshot = ZeroShotPrompts.from_config(config)
        # a video or audio tower in the image slot (config.model.image.kind): batches carry
        # 'video' uint8 [batch, frames, H, W, 3] or 'audio' [batch, frames, mels] + 'audio_mask'
        # instead of 'image'
        self.media = media_kind(config.model.image)
        self.image_size = 0 if self.media else config.model.image.get("image_size", 0)

    def make_example(self, data_cfg: Any, train: bool) -> Any:
        if self.media is None:
            return super().make_example(data_cfg, train)
        return MediaTextExample(self.tokenizer, MediaInputs(self.media, data_cfg, train))

    def tower_inputs(self, batch: Batch) -> tuple[jax.Array, jax.Array | None]:
        """The image tower's input (normalized images or video, or log-mels) and mask."""
        if self.media == "audio":
            return batch["audio"], batch["audio_mask"]
        return normalize_images(batch[self.media or "image"], self.normalization), None

    def dummy_extras(self, batch_size: int) -> dict[str, Any]:
        """The video / audio tower's inputs (``image`` otherwise, from ``image_size``)."""
        return dummy_media(self.media, self.image_cfg, batch_size) if self.media else {}

    def init(self, rng: jax.Array) -> Any:
        """Boxed (logically partitioned) variables."""
        b = self.dummy_batch()
        images, mask = self.tower_inputs(b)
        return self.model.init(
            {"params": rng}, images, b["tokens"], b["padding_mask"], image_mask=mask
        )

    def forward(
        self, params: Any, batch: Batch, rng: jax.Array, train: bool = True
    ) -> dict[str, jax.Array]:
        """Model outputs the loss needs: ``{'image', 'text'}`` (``[batch, dim]``,
        L2-normalized) and the scalars ``logit_scale``, ``logit_bias``."""
        images, mask = self.tower_inputs(batch)
        return self.model.apply(
            {"params": params},
            images,
            batch["tokens"],
            batch["padding_mask"],
            image_mask=mask,
            deterministic=not train,
            rngs={"dropout": rng},
        )

    def loss_from_outputs(
        self, out: dict[str, jax.Array]
    ) -> tuple[jax.Array, dict[str, jax.Array]]:
        """The contrastive loss over every pair of ``forward`` outputs (the global batch)."""
        if self.loss_kind == "softmax":
            return softmax_contrastive_loss(out["image"], out["text"], out["logit_scale"])
        return sigmoid_contrastive_loss(
            out["image"], out["text"], out["logit_scale"], out["logit_bias"]
        )

    def eval_step(self, params: Any, batch: Batch) -> dict[str, jax.Array]:
        """Eval forward: ``{'image': [batch, dim], 'text': [batch, dim]}`` (L2-normalized),
        the batch's ``image_id`` / ``label`` ``[batch]`` when it has them, and with zero-shot
        prompts ``zeroshot_sim`` ``[batch, classes]``: image vs. each class's mean prompt."""
        images, mask = self.tower_inputs(batch)
        out = self.model.apply(
            {"params": params}, images, batch["tokens"], batch["padding_mask"], image_mask=mask
        )
        result = {"image": out["image"], "text": out["text"]}
        result.update({k: batch[k] for k in ("image_id", "label") if k in batch})
        if self.zeroshot is not None:
            ids, mask = self.zeroshot.tokens
            prompts = l2_normalize(
                self.model.apply(
                    {"params": params},
                    jnp.asarray(ids),
                    jnp.asarray(mask),
                    method=type(self.model).encode_text,
                )
            )  # [classes * templates, dim]
            classes = l2_normalize(
                prompts.reshape(self.zeroshot.num_classes, -1, prompts.shape[-1]).mean(1)
            )
            result["zeroshot_sim"] = out["image"] @ classes.T
        return result

    def eval_metrics(self, outputs: dict[str, np.ndarray]) -> dict[str, float]:
        """Recall@1/5/10 both ways over the whole eval split (images deduplicated by
        ``image_id`` when the eval rows carry it; in chunks on the device, so large eval sets
        never build the whole similarity matrix) and zero-shot accuracy when configured."""
        metrics = retrieval_metrics_chunked(
            outputs["image"], outputs["text"], ks=(1, 5, 10), image_ids=outputs.get("image_id")
        )
        if "zeroshot_sim" in outputs:
            labels = self.zeroshot.class_of(outputs["label"])
            metrics["zeroshot_acc"] = zeroshot_accuracy(outputs["zeroshot_sim"], labels)
        return metrics
