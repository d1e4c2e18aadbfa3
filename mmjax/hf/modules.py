"""Thin wrappers that give mmjax encoders the outputs of transformers' model classes.

The encoders are mmjax's own (``models/vision.py``, ``models/text.py``,
``models/resnet.py``); these only add the HF heads and name the outputs
(``last_hidden_state``, ``pooler_output``, ``logits``). The encoder sits under
``image/`` or ``text/`` in the param tree, as in ``TwoTower``.
"""

from __future__ import annotations

from typing import Unpack

import flax.linen as nn
import jax
import jax.numpy as jnp

from mmjax.models.heads import ClassifierHead, MLMHead, TanhPooler
from mmjax.models.layers import Dtype
from mmjax.models.resnet import ResNet, ResNetModes
from mmjax.models.text import BertEncoder
from mmjax.models.vision import VisionTransformer

# What every wrapper returns: transformers' output names -> arrays.
Outputs = dict[str, jax.Array]


def hf_outputs(
    out: Outputs, pooler_output: jax.Array | None, num_labels: int, dtype: Dtype
) -> Outputs:
    """An encoder's ``out`` under transformers' names: ``last_hidden_state`` (its
    ``tokens``), ``pooler_output`` (unless None) and, when ``num_labels > 0``, ``'logits'``
    ``[batch, num_labels]`` of a linear classifier (``head``) on ``out['pooled']``; call
    inside the wrapper's compact ``__call__``."""
    result = {"last_hidden_state": out["tokens"]}
    if pooler_output is not None:
        result["pooler_output"] = pooler_output
    if num_labels:
        result["logits"] = ClassifierHead(num_labels, dtype, name="head")(out["pooled"])
    return result


class HFViT(nn.Module):
    """``ViTModel`` (``pooler=True``) / ``ViTForImageClassification`` (``num_labels > 0``).

    ``pixel_values`` ``[batch, H, W, C]`` -> ``last_hidden_state [batch, 1 + patches, width]``
    (final LayerNorm applied), ``pooler_output [batch, width]``, ``logits [batch, labels]``.
    """

    image: VisionTransformer
    pooler: bool = True
    num_labels: int = 0
    dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, pixel_values: jax.Array, *, deterministic: bool = True) -> Outputs:
        out = self.image(pixel_values, deterministic=deterministic)
        pooled = None
        if self.pooler:
            pooled = TanhPooler(self.image.width, self.dtype, name="pooler")(out["pooled"])
        return hf_outputs(out, pooled, self.num_labels, self.dtype)


class HFBert(nn.Module):
    """``BertModel`` / ``BertForMaskedLM`` (``mlm=True``; decoder tied to word embeddings).

    ``input_ids`` / ``attention_mask`` (1 = real token, any padding pattern) / ``token_type_ids``
    ``[batch, seq]`` -> ``last_hidden_state [batch, seq, width]``, ``pooler_output
    [batch, width]`` (when the encoder has a pooler), ``logits [batch, seq, vocab]``.
    """

    text: BertEncoder
    mlm: bool = False
    dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(
        self,
        input_ids: jax.Array,
        attention_mask: jax.Array | None = None,
        token_type_ids: jax.Array | None = None,
        *,
        deterministic: bool = True,
    ) -> Outputs:
        mask = None if attention_mask is None else attention_mask.astype(bool)
        out = self.text(input_ids, mask, token_type_ids, deterministic=deterministic)
        result = hf_outputs(out, out.get("pooled"), 0, self.dtype)
        if self.mlm:
            table = nn.unbox(self.text.variables["params"]["word_embed"]["embedding"])
            head = MLMHead(self.text.act, self.text.ln_eps, self.dtype, name="mlm")
            result["logits"] = head(out["tokens"], table)
        return result


class HFResNet(nn.Module):
    """``ResNetModel`` / ``ResNetForImageClassification`` (``num_labels > 0``).

    ``pixel_values`` ``[batch, H, W, C]`` -> ``last_hidden_state [batch, h, w, C']`` (NHWC;
    transformers returns NCHW), ``pooler_output [batch, C']`` (transformers:
    ``[batch, C', 1, 1]``), ``logits [batch, labels]``.
    """

    image: ResNet
    num_labels: int = 0
    dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, pixel_values: jax.Array, **modes: Unpack[ResNetModes]) -> Outputs:
        out = self.image(pixel_values, **modes)
        return hf_outputs(out, out["pooled"], self.num_labels, self.dtype)


class HFVisionModel(nn.Module):
    """``BeitModel`` / ``BeitForImageClassification`` (``num_labels > 0``) / ``Dinov2Model`` /
    ``Dinov2WithRegistersModel``, by ``family`` (``'beit'``, ``'dinov2'``,
    ``'dinov2_with_registers'``): the ViT's outputs under transformers' names.

    ``pixel_values`` ``[batch, H, W, C]`` -> ``last_hidden_state [batch, 1 + registers +
    patches, width]``, ``pooler_output [batch, width]``, ``logits [batch, labels]``.
    """

    image: VisionTransformer
    family: str
    num_labels: int = 0
    dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, pixel_values: jax.Array, *, deterministic: bool = True) -> Outputs:
        out = self.image(pixel_values, deterministic=deterministic)
        return hf_outputs(out, out["pooled"], self.num_labels, self.dtype)
