"""Text-to-image (``config.task.name='text_to_image'``): a text-conditioned generator of VQ-VAE
image codes, trained with the tokenizer frozen; sampling with a KV cache, temperature,
top-k and classifier-free guidance.

Model: ``mmjax.models.text_to_image.TextToImage`` (``config.model.text``: the CLIP text
tower; ``config.model.decoder``: the caption decoder's width / depth / heads / MLP; its
vocabulary and length follow from ``config.model.vqvae``, which must be the tokenizer
run's). Params: ``text/``, ``decoder/`` and ``vqvae/``; the config freezes ``vqvae/.*`` and
``init_from`` names the VQ-VAE run (its params are ``vqvae/...`` too, so they load by path).

Loss: next-code cross-entropy of the images' codes given the caption. Classifier-free
guidance training: each caption is replaced by the null condition (the empty caption,
``[BOS, EOS]``) with probability ``config.task.cond_drop`` (0.2), so one model is both the
conditional and the unconditional one.

Sampling (``generate``, under ``jax.jit``): ``mmjax.models.generate.sample`` over the cached
decoder (only the ``codebook_size`` code logits: BOS is never drawn), ``temperature``,
``top_k`` and ``guidance_scale`` from ``config.task``; with guidance the conditional and the
null-caption rows run as one batch of twice the rows. The codes go through the VQ-VAE
decoder to pixels.

Eval: teacher-forced ``token_ce`` / ``token_acc`` of the eval images' codes under their
captions (and under the null caption: ``token_ce_uncond``; conditioning that helps makes
it larger), the fraction of the codebook the guided samples use and, with
``config.task.judges`` (``{attribute: classifier run}``, ``mmjax.evaluation.judge``), the
per-attribute accuracy of the images sampled for the eval captions, without guidance
(``judge_<attribute>``) and with it (``judge_<attribute>_guided``), and with
``config.task.clip`` (a contrastive run) the CLIP score of the samples against their
captions (``clip_score[_guided]``; ``_real``: the eval's real images); sample grids go to
``WORKDIR/predictions/<step>/eval_samples[_guided].png`` (``dump_predictions``) and to
TensorBoard as ``eval/samples[_guided]`` (``eval_images``).
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from mmjax.config import ConfigError
from mmjax.evaluation.judge import AttributeJudge, ClipScorer, image_grid
from mmjax.losses import token_cross_entropy
from mmjax.models.decoder import CaptionDecoder, DecoderSpec
from mmjax.models.encoders import build_text_encoder
from mmjax.models.generate import cached_step, sample
from mmjax.models.spec import runtime_fields, spec_from_config
from mmjax.models.text_to_image import TextToImage
from mmjax.tasks.base import Task, register_task
from mmjax.tasks.vqvae import build_vqvae, unit_images

Batch = dict[str, jax.Array]


def build_text_to_image(model_cfg: Any) -> TextToImage:
    """``TextToImage`` from ``config.model`` (``text``, ``decoder``, ``vqvae``)."""
    runtime = runtime_fields(model_cfg)
    memory = {k: runtime[k] for k in ("remat", "scan_layers")}
    text = build_text_encoder(model_cfg.text, runtime["dtype"], runtime["attention_impl"], **memory)
    vqvae = build_vqvae(model_cfg)
    grid = vqvae.spec.grid
    section = dict(
        model_cfg.decoder,
        vocab_size=vqvae.spec.codebook_size + 1,  # the codes and BOS
        context_length=grid * grid,
        eos_id=-1,  # no end token: every image has grid * grid codes
    )
    spec = spec_from_config(DecoderSpec, section, "config.model.decoder", **runtime)
    features = bool(model_cfg.get("code_features", False))
    return TextToImage(text=text, decoder=CaptionDecoder(spec), vqvae=vqvae, code_features=features)


@register_task("text_to_image")
class TextToImageTask(Task):
    """Model (``TextToImage``) + loss + sampling. A batch is ``{'image': uint8 [batch, H, W,
    3], 'tokens': int32 [batch, seq], 'padding_mask': bool [batch, seq]}``."""

    def __init__(self, config: Any):
        super().__init__(config)
        task = config.task
        self.model = build_text_to_image(config.model)
        spec = self.model.vqvae.spec
        self.image_size = spec.image_size
        self.context_length = config.model.text.context_length
        self.codebook_size = spec.codebook_size
        self.num_codes = spec.grid * spec.grid
        self.cond_drop = float(task.get("cond_drop", 0.2))
        self.guidance_scale = float(task.get("guidance_scale", 3.0))
        self.temperature = float(task.get("temperature", 1.0))
        self.top_k = int(task.get("top_k", 0))
        if not 0.0 <= self.cond_drop < 1.0 or self.temperature <= 0 or self.top_k < 0:
            raise ConfigError(
                "config.task: need 0 <= cond_drop < 1, temperature > 0, top_k >= 0; got "
                f"{self.cond_drop}, {self.temperature}, {self.top_k}"
            )
        ids, mask = self.tokenizer([""])  # the null condition: [BOS, EOS]
        self.null_tokens, self.null_mask = ids[0], mask[0]

    def init(self, rng: jax.Array) -> Any:
        b = self.dummy_batch()
        images = unit_images(b["image"])
        return self.model.init({"params": rng}, images, b["tokens"], b["padding_mask"])

    def null_condition(self, n: int) -> tuple[jax.Array, jax.Array]:
        """``n`` rows of the null caption: ``(tokens [n, seq], padding_mask [n, seq])``."""
        tokens = jnp.broadcast_to(jnp.asarray(self.null_tokens), (n, self.context_length))
        return tokens, jnp.broadcast_to(jnp.asarray(self.null_mask), (n, self.context_length))

    def drop_captions(self, batch: Batch, rng: jax.Array) -> tuple[jax.Array, jax.Array]:
        """The batch's captions, each the null caption with probability ``cond_drop``."""
        tokens, mask = batch["tokens"], batch["padding_mask"]
        drop = jax.random.bernoulli(rng, self.cond_drop, (tokens.shape[0], 1))
        null_tokens, null_mask = self.null_condition(tokens.shape[0])
        return jnp.where(drop, null_tokens, tokens), jnp.where(drop, null_mask, mask)

    def loss(
        self, params: Any, batch: Batch, rng: jax.Array, train: bool = True
    ) -> tuple[jax.Array, dict[str, jax.Array]]:
        drop_rng, dropout_rng = jax.random.split(rng)
        if train and self.cond_drop:
            tokens, mask = self.drop_captions(batch, drop_rng)
        else:
            tokens, mask = batch["tokens"], batch["padding_mask"]
        out = self.model.apply(
            {"params": params},
            unit_images(batch["image"]),
            tokens,
            mask,
            deterministic=not train,
            rngs={"dropout": dropout_rng},
        )
        ce, correct = token_cross_entropy(out["logits"], out["codes"])
        return jnp.mean(ce), {"token_ce": jnp.mean(ce), "token_acc": jnp.mean(correct)}

    def _decoder_fns(self, params: Any, context: jax.Array, mask: jax.Array) -> tuple[Any, Any]:
        """``(step_fn, zero cache)`` of the cached decoder on ``context`` ``[n, seq, width]``;
        the step's logits are the codes' only (BOS cut off)."""

        def apply(cache: Any, seq: jax.Array) -> tuple[jax.Array, Any]:
            variables = {"params": params} if cache is None else {"params": params, "cache": cache}
            logits, new = self.model.apply(
                variables, seq, context, mask, method=TextToImage.decode_step, mutable=["cache"]
            )
            return logits[..., : self.codebook_size], new["cache"]

        return cached_step(apply, context.shape[0], self.num_codes)

    def generate(
        self,
        params: Any,
        tokens: jax.Array,
        padding_mask: jax.Array,
        rng: jax.Array,
        guidance_scale: float | None = None,
    ) -> dict[str, jax.Array]:
        """Captions ``[batch, seq]`` -> ``{'codes': int32 [batch, grid * grid], 'logp':
        [batch, grid * grid], 'images': fp32 [batch, H, W, 3] in [0, 1]}``; ``guidance_scale``
        ``None`` samples the conditional model alone (no null-caption rows)."""
        b = tokens.shape[0]
        if guidance_scale is not None:
            null_tokens, null_mask = self.null_condition(b)
            tokens = jnp.concatenate([tokens, null_tokens])
            padding_mask = jnp.concatenate([padding_mask, null_mask])
        context = self.model.apply(
            {"params": params}, tokens, padding_mask, method=TextToImage.encode_text
        )
        ids, logp = sample(
            *self._decoder_fns(params, context, padding_mask),
            rng,
            batch_size=b,
            max_len=self.num_codes + 1,
            bos_id=self.codebook_size,
            temperature=self.temperature,
            top_k=self.top_k,
            guidance_scale=guidance_scale,
        )
        codes = ids[:, 1:]
        images = self.model.apply({"params": params}, codes, method=TextToImage.decode_codes)
        return {"codes": codes, "logp": logp, "images": jnp.clip(images, 0.0, 1.0)}

    def eval_step(self, params: Any, batch: Batch) -> dict[str, jax.Array]:
        """Per example: teacher-forced ``token_ce`` / ``token_acc`` (caption) and
        ``token_ce_uncond`` (null caption), and the guided samples' ``codes``."""
        images = unit_images(batch["image"])
        out = {}
        null = self.null_condition(images.shape[0])
        for suffix, (tokens, mask) in (
            ("", (batch["tokens"], batch["padding_mask"])),
            ("_uncond", null),
        ):
            res = self.model.apply({"params": params}, images, tokens, mask)
            ce, correct = token_cross_entropy(res["logits"], res["codes"])
            out[f"token_ce{suffix}"] = jnp.mean(ce, axis=1)
            if not suffix:
                out["token_acc"] = jnp.mean(correct, axis=1)
        rng = jax.random.PRNGKey(0)  # the same samples at every eval
        for suffix, scale in (("", None), ("_guided", self.guidance_scale)):
            generated = self.generate(params, batch["tokens"], batch["padding_mask"], rng, scale)
            out[f"codes{suffix}"] = generated["codes"]
            pixels = jnp.round(generated["images"] * 255.0)
            out[f"samples{suffix}"] = pixels.astype(jnp.uint8)
        if "label" in batch:
            out["label"] = batch["label"]
        out["tokens"] = batch["tokens"]  # the captions, for the CLIP score
        out["image"] = batch["image"]  # the real images: the judges' and CLIP's reference
        return out

    def eval_images(self, outputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """``{'samples', 'samples_guided'}``: uint8 grids of the first 64 eval captions'
        samples, without and with guidance (the same captions, in order; 8 a row)."""
        return {
            f"samples{suffix}": image_grid(np.asarray(outputs[f"samples{suffix}"][:64]))
            for suffix in ("", "_guided")
        }

    def dump_predictions(self, outputs: dict[str, np.ndarray], directory: Any, name: str) -> None:
        """``<name>_samples.png`` / ``<name>_samples_guided.png``: the ``eval_images``."""
        from PIL import Image

        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        for key, grid in self.eval_images(outputs).items():
            Image.fromarray(grid).save(directory / f"{name}_{key}.png")

    @functools.cached_property
    def judge(self) -> AttributeJudge:
        """The classifiers of ``config.task.judges`` (``{attribute: run}``), loaded once."""
        return AttributeJudge(dict(self.config.task.get("judges") or {}))

    @functools.cached_property
    def clip_scorer(self) -> ClipScorer | None:
        """The CLIP of ``config.task.clip`` (a contrastive run), loaded once; None: none."""
        run = self.config.task.get("clip", "")
        return ClipScorer(run) if run else None

    def eval_metrics(self, outputs: dict[str, np.ndarray]) -> dict[str, float]:
        """``token_ce`` / ``token_acc`` / ``token_ce_uncond``, the samples' codebook usage and,
        with ``config.task.judges`` and synthetic labels, ``judge_<attribute>`` (plain
        sampling), ``judge_<attribute>_guided`` and ``judge_<attribute>_real`` (the eval's
        real images) accuracies; with ``config.task.clip``, ``clip_score``,
        ``clip_score_guided`` and ``clip_score_real`` against the eval captions."""
        metrics = {
            k: float(np.mean(outputs[k])) for k in ("token_ce", "token_acc", "token_ce_uncond")
        }
        used = len(np.unique(outputs["codes_guided"]))
        metrics["sample_codebook_usage"] = used / self.codebook_size
        labels = outputs.get("label")
        sets = {"": outputs["samples"], "_guided": outputs["samples_guided"]}
        sets["_real"] = outputs["image"]
        if self.judge and labels is not None and (labels >= 0).all():
            for suffix, images in sets.items():
                acc = self.judge.accuracy(images, labels)
                metrics.update({f"judge_{k}{suffix}": v for k, v in acc.items()})
        if self.clip_scorer is not None:
            captions = self.tokenizer.decode(outputs["tokens"])
            for suffix, images in sets.items():
                metrics[f"clip_score{suffix}"] = self.clip_scorer.score(images, captions)
        return metrics
