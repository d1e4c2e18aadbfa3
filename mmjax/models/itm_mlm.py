"""The ALBEF/BLIP-style ITC + ITM + MLM model (``mmjax.tasks.itm_mlm`` trains it): a
``FusedModel`` whose ``pretrain`` method encodes once, samples hard negatives from the
contrastive similarities and fuses positives, negatives and masked text in one pass.
See the task module's docstring for the step it computes."""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from mmjax.config import ConfigError
from mmjax.models.common import logical_param
from mmjax.models.fused import FusedModel, build_fused_model
from mmjax.models.fusion import CrossAttentionFusion
from mmjax.models.heads import ClassifierHead, MLMHead, dense
from mmjax.models.towers import l2_normalize

Batch = dict[str, jax.Array]


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
        self.logit_scale = logical_param(
            self, "logit_scale", nn.initializers.constant(self.logit_scale_init), (), ()
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
    plus ``embed_dim`` / ``logit_scale_init`` for ITC; the MLM head takes the text
    tower's activation and LayerNorm eps."""
    if cfg.get("features"):
        raise ConfigError("config.model.features: itm_mlm fuses only image and text")
    if cfg.text.get("kind") != "bert":  # before building: another kind has other keys
        raise ConfigError(
            f"config.model.text.kind: itm_mlm needs a bidirectional 'bert' text encoder for "
            f"masked LM, got {cfg.text.get('kind')!r}"
        )
    base = build_fused_model(cfg)
    if base.text.pool == "none":
        raise ConfigError("config.model.text.pool: itm_mlm needs a pooled text output for ITC")
    if type(base.fusion) is not CrossAttentionFusion:
        raise ConfigError(
            f"config.model.fusion.kind: itm_mlm needs 'cross_attention', "
            f"got {cfg.fusion.get('kind')!r}"
        )
    if base.fusion.width != base.text.width:
        raise ConfigError(
            f"config.model.fusion.width ({base.fusion.width}) must equal config.model.text."
            f"width ({base.text.width}): the MLM decoder is tied to the text word embeddings"
        )
    fields = {
        f.name: getattr(base, f.name)
        for f in dataclasses.fields(FusedModel)
        if f.init and f.name not in ("parent", "name")
    }
    return ITMMLMModel(
        **fields,
        embed_dim=cfg.embed_dim,
        logit_scale_init=cfg.logit_scale_init,
        mlm_act=base.text.act,
        mlm_ln_eps=base.text.ln_eps,
    )
