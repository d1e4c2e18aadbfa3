"""The fused multimodal model that matching / MLM / VQA / classification tasks use.

``FusedModel`` holds one encoder per modality (``image/``, ``text/``,
``features_<name>/`` in the param tree) and one fusion module (``fusion/``), built by
``build_fused_model(config.model)`` from:

    model.image = dict(...)            # as in configs/clip_synthetic.py, or None
    model.text = dict(kind='clip'|'bert', ...)   # or None
    model.features = {name: dict(kind='sequence'|'video'|'audio'|..., ...)}
    model.fusion = dict(kind=..., width=, ...)   # the kind's spec fields (models/fusion/)

Every kind is a registry entry (``models/kinds.py``): the builder looks it up and builds
it from its spec; nothing here branches on a kind.

Tasks call ``encode`` and ``fuse`` (and the heads they own) inside one ``model.apply``:

    encoded = model.apply(params, batch, method=FusedModel.encode)
    fused = model.apply(params, encoded, method=FusedModel.fuse)

Modality order (for type embeddings, fusion inputs and the early-fusion token layout):
``text``, ``image``, then the feature modalities sorted by name.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from mmjax.config import ConfigError
from mmjax.models import fusion as _fusion_kinds  # noqa: F401  (registers the fusion kinds)
from mmjax.models.common import zero_padding
from mmjax.models.encoders import build_encoder, encode_tokens
from mmjax.models.fusion.common import Tokens
from mmjax.models.kinds import FUSIONS
from mmjax.models.spec import runtime_fields, spec_from_config
from mmjax.models.towers import build_image_encoder, build_text_encoder

Array = jax.Array


class FusedModel(nn.Module):
    """Modality encoders + a fusion module.

    ``encode(inputs)`` -> ``{modality: Tokens}`` (``{'tokens': [batch, seq, dim], 'mask':
    bool [batch, seq], 'pooled': [batch, dim]}``) from the inputs
    ``'image'`` (normalized float ``[batch, H, W, 3]``; every token real),
    ``'tokens'`` int32 ``[batch, seq]`` + ``'padding_mask'`` bool ``[batch, seq]`` (text),
    ``'features/<name>'`` ``[batch, seq, dim]`` + ``'features/<name>_mask'`` bool
    ``[batch, seq]`` (for encoders that take a mask). Padded token positions are 0.

    ``fuse(encoded)`` -> the fusion module's output: ``{'pooled': [batch, width], ...}``;
    the token-level kinds (``early``, ``cross_attention``, ``co_attention``) with a text
    modality also return ``'tokens'`` ``[batch, s_text, width]`` (the fused text-side
    tokens, e.g. for MLM) and ``'mask'`` (the text padding mask); ``gated`` adds
    ``'gate'``, ``graph`` adds ``'adjacency'``, ``co_attention`` adds ``'context_tokens'``
    and ``'context_mask'``.
    """

    fusion: nn.Module
    image: nn.Module | None = None
    text: nn.Module | None = None
    features: Mapping[str, nn.Module] | None = None
    dtype: Any = jnp.float32

    @property
    def modalities(self) -> tuple[str, ...]:
        """Present modalities in fusion order (``modality_order``)."""
        return modality_order(self.text, self.image, self.features)

    def encode(
        self, inputs: Mapping[str, Array], *, deterministic: bool = True
    ) -> dict[str, Tokens]:
        """Runs every modality encoder; see the class docstring for keys and shapes."""
        out: dict[str, Tokens] = {}
        if self.text is not None:
            tokens = _input(inputs, "tokens", "text")
            mask = _input(inputs, "padding_mask", "text").astype(jnp.bool_)
            enc = self.text(tokens, mask, deterministic=deterministic)
            if "pooled" not in enc:
                raise ValueError("config.model.text.pool: the fused model needs a pooled output")
            out["text"] = {
                "tokens": zero_padding(enc["tokens"], mask),
                "mask": mask,
                "pooled": enc["pooled"],
            }
        if self.image is not None:
            image = _input(inputs, "image", "image")
            out["image"] = encode_tokens(self.image, image, None, deterministic)
        for name, encoder in sorted((self.features or {}).items()):
            feats = _input(inputs, f"features/{name}", f"features.{name}")
            mask = None
            if encoder.takes_mask:
                mask = _input(inputs, f"features/{name}_mask", f"features.{name}")
                mask = mask.astype(jnp.bool_)
            out[name] = encode_tokens(encoder, feats, mask, deterministic)
        return out

    def fuse(
        self, encoded: Mapping[str, Tokens], *, deterministic: bool = True
    ) -> dict[str, Array]:
        """Fuses ``encode``'s output; see the class docstring for keys and shapes."""
        missing = [m for m in self.modalities if m not in encoded]
        if missing:
            raise KeyError(f"fuse: encoded modalities {missing} missing; got {sorted(encoded)}")
        return self.fusion({m: encoded[m] for m in self.modalities}, deterministic=deterministic)

    def __call__(
        self, inputs: Mapping[str, Array], *, deterministic: bool = True
    ) -> dict[str, Array]:
        """``fuse(encode(inputs))`` (what ``init`` runs)."""
        encoded = self.encode(inputs, deterministic=deterministic)
        return self.fuse(encoded, deterministic=deterministic)

    def text_embedding(self) -> Array:
        """The text encoder's word-embedding table ``[vocab, text width]`` (for a tied MLM
        head such as ``heads.MLMHead``); call inside ``apply`` after ``encode``."""
        if self.text is None:
            raise ValueError("text_embedding: the model has no text modality (config.model.text)")
        params = self.text.variables["params"]
        for key in ("word_embed", "token_embed"):  # BertEncoder, CLIPTextTransformer
            if key in params:
                return params[key]["embedding"]
        raise ValueError(f"text_embedding: no word embedding among {sorted(params)}")


def modality_order(text: Any, image: Any, features: Mapping[str, Any] | None) -> tuple[str, ...]:
    """Present modalities in fusion order: text, image, features sorted by name."""
    names = [m for m, enc in (("text", text), ("image", image)) if enc is not None]
    return (*names, *sorted(features or {}))


def _input(inputs: Mapping[str, Array], key: str, modality: str) -> Array:
    if key not in inputs:
        raise KeyError(
            f"fused model input {key!r} missing (config.model.{modality} is set); "
            f"got {sorted(inputs)}"
        )
    return inputs[key]


def build_fusion(fcfg: Any, modalities: tuple[str, ...], **runtime: Any) -> nn.Module:
    """The ``config.model.fusion`` module: its ``kind``'s registered class, built from the
    section and checked against the present ``modalities``."""
    if not fcfg:
        raise ConfigError("config.model.fusion is missing (dict(kind=..., width=..., ...))")
    cls = FUSIONS.get(fcfg.get("kind"), key="config.model.fusion.kind")
    spec = spec_from_config(cls.Spec, fcfg, "config.model.fusion", ("kind",), **runtime)
    try:
        spec.check_modalities(modalities)
    except ValueError as e:
        raise ConfigError(f"config.model.fusion.kind={fcfg.get('kind')!r}: {e}") from None
    return cls(spec)


def build_fused_model(cfg: Any) -> FusedModel:
    """``FusedModel`` from ``config.model`` (see the module docstring for the keys)."""
    runtime = runtime_fields(cfg)
    image = build_image_encoder(cfg.image, **runtime) if cfg.get("image") else None
    text = build_text_encoder(cfg.text, **runtime) if cfg.get("text") else None
    features = {}
    for name, f in (cfg.get("features") or {}).items():
        if not name.isidentifier() or name in ("image", "text"):
            raise ConfigError(
                f"config.model.features: name {name!r} must be an identifier other than "
                "'image' / 'text'"
            )
        features[name] = build_encoder(f, f"config.model.features.{name}", "sequence", **runtime)
    fusion = build_fusion(cfg.get("fusion"), modality_order(text, image, features), **runtime)
    return FusedModel(
        fusion=fusion, image=image, text=text, features=features or None, dtype=runtime["dtype"]
    )
