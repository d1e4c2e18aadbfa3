"""VQ-VAE image tokenizer task (``config.task.name='vqvae'``): reconstruction + commitment
loss, EMA codebook updates, reconstruction / codebook-usage eval.

Model: ``mmjax.models.vqvae.VQVAE`` from ``config.model.vqvae``; its params sit under
``vqvae/`` (``vqvae/encoder``, ``vqvae/quantizer``, ``vqvae/decoder``), the paths the
text-to-image task's frozen tokenizer has, so ``init_from`` a VQ-VAE run loads it as is.

Loss (per batch; images scaled to ``[0, 1]``)::

    recon_loss + beta * mean((z - stop_gradient(e))^2)
    recon_loss = mean((recon - image)^2)                           # recon_deadzone = 0
               = mean(max(|recon - image| - d, 0)^2) + w * mean((recon - image)^2)   # d > 0

``beta`` is ``config.task.commitment_cost`` (the paper's 0.25), ``d`` / ``w``
``config.task.recon_deadzone`` / ``recon_mse_weight`` (defaults 0.1 / 0.1: an error within
the pixel noise costs only ``w e^2``, so codes do not pay for noise). The codebook gets no
gradient: after each optimizer step the trainer calls ``update_buffers``, which assigns the
step's encoder outputs (computed with the params the loss saw) to their nearest codes and
moves ``vqvae/quantizer/ema_count`` / ``ema_sum`` by ``ema_update`` (sonnet's
``VectorQuantizerEMA``). EMA rather than dead-code resets: the update is a fixed formula of
the batch (no data-dependent re-seeding schedule to tune), and its statistics are two
arrays in the params tree, so checkpoint / resume / ``init_from`` stay exact with no
trainer state of its own. The commitment term is the only loss the codebook needs. With
``model.vqvae.dead_code_threshold > 0`` the same step restarts codes the EMA has let die
(``restart_dead_codes``: a fixed formula of the batch too).

Eval (``eval_metrics`` over the eval split): ``recon_mse`` (per-pixel, ``[0, 1]`` scale),
``psnr`` (``10 log10(1 / recon_mse)``, dB), ``codebook_usage`` (fraction of the ``K`` codes
used at least once) and ``perplexity`` (``exp`` of the entropy of the code histogram; ``K``
when all codes are used equally). With ``config.task.judges`` (``{attribute: classifier
run}``, ``mmjax.evaluation.judge``, the same judges the text-to-image eval uses) and
synthetic labels, ``judge_<attribute>``: the fraction of reconstructions whose attribute the
judge reads as the original's, the ceiling of any generator over these codes (a shape the
tokenizer blurs away cannot be generated), and ``judge_<attribute>_real``: the same judge on
the original images (its own ceiling).
"""

from __future__ import annotations

import functools
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from mmjax.config import ConfigError
from mmjax.evaluation.judge import AttributeJudge, image_grid
from mmjax.models.spec import runtime_fields, spec_from_config
from mmjax.models.vqvae import (
    VQVAE,
    VQVAESpec,
    ema_update,
    nearest_codes,
    restart_dead_codes,
)
from mmjax.tasks.base import Task, register_task

Batch = dict[str, jax.Array]
SCOPE = "vqvae"  # the params' top-level name (shared with the text-to-image task)


def build_vqvae(model_cfg: Any) -> VQVAE:
    """``VQVAE`` from ``config.model`` (its ``vqvae`` section and the model-wide dtype)."""
    runtime = {"dtype": runtime_fields(model_cfg)["dtype"]}
    return VQVAE(spec_from_config(VQVAESpec, model_cfg.vqvae, "config.model.vqvae", **runtime))


def unit_images(images: jax.Array) -> jax.Array:
    """uint8 ``[batch, H, W, 3]`` -> fp32 in ``[0, 1]``."""
    return images.astype(jnp.float32) / 255.0


def code_perplexity(codes: Any, k: int) -> Any:
    """``exp(entropy)`` of the histogram of ``codes`` over ``k`` codes (jnp or numpy)."""
    if isinstance(codes, jax.Array):
        xp, p = jnp, jnp.bincount(jnp.ravel(codes), length=k) / codes.size
    else:
        xp, p = np, np.bincount(np.ravel(codes), minlength=k) / codes.size
    return xp.exp(-xp.sum(xp.where(p > 0, p * xp.log(xp.where(p > 0, p, 1.0)), 0.0)))


@register_task("vqvae")
class VQVAETask(Task):
    """Model (``VQVAE``) + loss + reconstruction eval. A batch is
    ``{'image': uint8 [batch, H, W, 3]}`` (other keys are ignored)."""

    buffers = f"{SCOPE}/quantizer/ema_(count|sum)"

    def __init__(self, config: Any):
        super().__init__(config)
        self.model = build_vqvae(config.model)
        self.spec = self.model.spec
        self.image_size = self.spec.image_size
        self.beta = float(config.task.get("commitment_cost", 0.25))
        if self.beta < 0:
            raise ConfigError(f"config.task.commitment_cost must be >= 0, got {self.beta}")
        self.deadzone = float(config.task.get("recon_deadzone", 0.0))
        self.mse_weight = float(config.task.get("recon_mse_weight", 1.0))
        if self.deadzone < 0 or self.mse_weight < 0:
            raise ConfigError(
                "config.task.recon_deadzone and recon_mse_weight must be >= 0, got "
                f"{self.deadzone}, {self.mse_weight}"
            )

    def init(self, rng: jax.Array) -> Any:
        images = unit_images(self.dummy_batch()["image"])
        return {"params": {SCOPE: self.model.init({"params": rng}, images)["params"]}}

    def apply(self, params: Any, *args: Any, **kw: Any) -> Any:
        """``self.model.apply`` with the ``vqvae/`` subtree of ``params``."""
        return self.model.apply({"params": params[SCOPE]}, *args, **kw)

    def loss(
        self, params: Any, batch: Batch, rng: jax.Array, train: bool = True
    ) -> tuple[jax.Array, dict[str, jax.Array]]:
        target = unit_images(batch["image"])
        out = self.apply(params, target)
        recon_mse = jnp.mean((out["recon"] - target) ** 2)
        commitment = jnp.mean((out["z"] - out["quantized"]) ** 2)  # quantized: no gradient
        recon_loss = recon_mse
        if self.deadzone > 0:  # errors within the pixel noise cost only mse_weight * e^2
            excess = jax.nn.relu(jnp.abs(out["recon"] - target) - self.deadzone)
            recon_loss = jnp.mean(excess**2) + self.mse_weight * recon_mse
        metrics = {
            "recon_mse": recon_mse,
            "commitment": commitment,
            "perplexity": code_perplexity(out["codes"], self.spec.codebook_size),
        }
        return recon_loss + self.beta * commitment, metrics

    def update_buffers(self, params: Any, batch: Batch) -> Any:
        """The EMA step of ``ema_count`` / ``ema_sum`` on this batch's encoder outputs."""
        q = params[SCOPE]["quantizer"]
        z = self.apply(params, unit_images(batch["image"]), method=VQVAE.encode)
        book = self.apply(params, method=lambda m: m.quantizer.codebook())
        codes = nearest_codes(z, book)  # once: the EMA step and the restart share them
        count, total = ema_update(q["ema_count"], q["ema_sum"], z, codes, self.spec.ema_decay)
        if self.spec.dead_code_threshold > 0:
            threshold = self.spec.dead_code_threshold
            count, total = restart_dead_codes(count, total, z, codes, book, threshold)
        return {SCOPE: {"quantizer": {"ema_count": count, "ema_sum": total}}}

    def eval_step(self, params: Any, batch: Batch) -> dict[str, jax.Array]:
        """``{'sq_err': [batch] per-image mean squared error, 'codes': int32 [batch, h, w],
        'recon': uint8 [batch, H, W, 3]}`` (+ ``label`` [batch] and the originals ``image``
        when the batch has labels: the judges read both)."""
        target = unit_images(batch["image"])
        out = self.apply(params, target)
        recon = jnp.round(jnp.clip(out["recon"], 0.0, 1.0) * 255.0).astype(jnp.uint8)
        outputs = {
            "sq_err": jnp.mean((out["recon"] - target) ** 2, axis=(1, 2, 3)),
            "codes": out["codes"],
            "recon": recon,
        }
        if "label" in batch:
            outputs.update(label=batch["label"], image=batch["image"])
        return outputs

    def eval_images(self, outputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """``{'reconstructions'}`` (with originals in the outputs): a uint8 grid of the first
        32 eval images, each row of 8 originals above their reconstructions."""
        if "image" not in outputs:
            return {}
        real, recon = np.asarray(outputs["image"][:32]), np.asarray(outputs["recon"][:32])
        rows = [part[i : i + 8] for i in range(0, len(real), 8) for part in (real, recon)]
        return {"reconstructions": image_grid(np.concatenate(rows))}

    @functools.cached_property
    def judge(self) -> AttributeJudge:
        """The classifiers of ``config.task.judges`` (``{attribute: run}``), loaded once."""
        return AttributeJudge(dict(self.config.task.get("judges") or {}))

    def eval_metrics(self, outputs: dict[str, np.ndarray]) -> dict[str, float]:
        mse = float(np.mean(outputs["sq_err"]))
        k = self.spec.codebook_size
        codes = np.asarray(outputs["codes"])
        metrics = {
            "recon_mse": mse,
            "psnr": float(10.0 * np.log10(1.0 / max(mse, 1e-12))),
            "codebook_usage": float(len(np.unique(codes)) / k),
            "perplexity": float(code_perplexity(codes, k)),
        }
        labels = outputs.get("label")
        if self.judge and labels is not None and (np.asarray(labels) >= 0).all():
            for key, suffix in (("recon", ""), ("image", "_real")):
                acc = self.judge.accuracy(np.asarray(outputs[key]), np.asarray(labels))
                metrics.update({f"judge_{attr}{suffix}": v for attr, v in acc.items()})
        return metrics
