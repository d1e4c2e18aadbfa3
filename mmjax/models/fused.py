"""The fused multimodal model that matching / MLM / VQA / classification tasks use.

``FusedModel`` holds one encoder per modality (``image/``, ``text/``,
``features_<name>/`` in the param tree) and one fusion module (``fusion/``), built by
``build_fused_model(config.model)`` from:

    model.image = dict(...)            # as in configs/clip_synthetic.py, or None
    model.text = dict(kind='clip'|'bert', ...)   # or None
    model.features = {name: dict(dim=, max_len=, width=, depth=, num_heads=, mlp_dim=)}
    model.fusion = dict(kind=..., width=, depth=, num_heads=, mlp_dim=, hidden=, rank=,
                        graph_layers=, adjacency=, clusters_per_modality=)

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

from mmjax.models.fusion import (
    INTO_WIDTH,
    CrossAttentionFusion,
    EarlyFusion,
    FeatureSequenceEncoder,
    GraphFusion,
    LateFusion,
    TensorFusion,
    zero_padding,
)
from mmjax.models.heads import dense
from mmjax.models.media import MEDIA_KINDS, build_media_encoder
from mmjax.models.towers import build_image_encoder, build_text_encoder, dtype_from_name
from mmjax.models.video import VideoTransformer

Array = jax.Array

TOKEN_KINDS = ("early", "cross_attention", "co_attention")
VECTOR_KINDS = ("late_concat", "gated", "tensor", "tensor_lowrank", "graph")
KINDS = TOKEN_KINDS + VECTOR_KINDS


class FusedModel(nn.Module):
    """Modality encoders + a fusion module.

    ``encode(inputs)`` -> ``{modality: {'tokens': [batch, seq, dim], 'mask': bool
    [batch, seq], 'pooled': [batch, dim]}}`` from the inputs
    ``'image'`` (normalized float ``[batch, H, W, 3]``; every token real),
    ``'tokens'`` int32 ``[batch, seq]`` + ``'padding_mask'`` bool ``[batch, seq]`` (text),
    ``'features/<name>'`` ``[batch, seq, dim]`` + ``'features/<name>_mask'`` bool
    ``[batch, seq]``. Padded token positions are 0.

    ``fuse(encoded)`` -> ``{'pooled': [batch, width], ...}``; the token-level kinds
    (``early``, ``cross_attention``, ``co_attention``) with a text modality also return
    ``'tokens'`` ``[batch, s_text, width]`` (the fused text-side tokens, e.g. for MLM)
    and ``'mask'`` (the text padding mask); ``gated`` adds ``'gate'``, ``graph`` adds
    ``'adjacency'``, ``co_attention`` adds ``'context_tokens'`` and ``'context_mask'``.

    ``cross_attention`` / ``co_attention``: the query is the text, the context is the
    other modalities' tokens concatenated along ``seq`` (masks likewise); when those
    modalities differ in dim, each whose dim is not ``width`` first gets its own Dense
    to ``width`` (``context_proj_<modality>``).
    """

    kind: str
    width: int
    fusion: nn.Module
    image: nn.Module | None = None
    text: nn.Module | None = None
    features: Mapping[str, nn.Module] | None = None
    dtype: Any = jnp.float32

    def setup(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"config.model.fusion.kind: unknown {self.kind!r}; known: {KINDS}")
        self.context_proj = {
            m: dense(self.width, INTO_WIDTH, self.dtype, None)  # setup names it context_proj_<m>
            for m in self.modalities[1:]
        }

    @property
    def modalities(self) -> tuple[str, ...]:
        """Present modalities in fusion order: text, image, features sorted by name."""
        names = [m for m, enc in (("text", self.text), ("image", self.image)) if enc is not None]
        return (*names, *sorted(self.features or {}))

    def encode(
        self, inputs: Mapping[str, Array], *, deterministic: bool = True
    ) -> dict[str, dict[str, Array]]:
        """Runs every modality encoder; see the class docstring for keys and shapes."""
        out: dict[str, dict[str, Array]] = {}
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
            enc = self.image(_input(inputs, "image", "image"), deterministic=deterministic)
            tokens = enc["tokens"]
            if tokens.ndim == 4:  # a ResNet's feature map [batch, h, w, c]
                tokens = tokens.reshape(tokens.shape[0], -1, tokens.shape[-1])
            mask = jnp.ones(tokens.shape[:2], jnp.bool_)
            out["image"] = {"tokens": tokens, "mask": mask, "pooled": enc["pooled"]}
        for name, encoder in sorted((self.features or {}).items()):
            feats = _input(inputs, f"features/{name}", f"features.{name}")
            if isinstance(encoder, VideoTransformer):  # every token real: no mask input
                enc = encoder(feats, deterministic=deterministic)
                mask = jnp.ones(enc["tokens"].shape[:2], jnp.bool_)
            else:
                mask = _input(inputs, f"features/{name}_mask", f"features.{name}")
                enc = encoder(feats, mask.astype(jnp.bool_), deterministic=deterministic)
                mask = enc.get("mask", mask.astype(jnp.bool_))  # audio: the patch mask
            out[name] = {"tokens": enc["tokens"], "mask": mask, "pooled": enc["pooled"]}
        return out

    def fuse(
        self, encoded: Mapping[str, Mapping[str, Array]], *, deterministic: bool = True
    ) -> dict[str, Array]:
        """Fuses ``encode``'s output; see the class docstring for keys and shapes."""
        missing = [m for m in self.modalities if m not in encoded]
        if missing:
            raise KeyError(f"fuse: encoded modalities {missing} missing; got {sorted(encoded)}")
        mods = [encoded[m] for m in self.modalities]
        if self.kind == "early":
            out = self.fusion(
                [e["tokens"] for e in mods], [e["mask"] for e in mods], deterministic=deterministic
            )
            result = {"pooled": out["pooled"]}
            if self.text is not None:  # text comes first, right after the CLS token
                s_text = encoded["text"]["tokens"].shape[1]
                result["tokens"] = out["tokens"][:, 1 : 1 + s_text]
                result["mask"] = encoded["text"]["mask"]
            return result
        if self.kind in ("cross_attention", "co_attention"):
            context, context_mask = self._context(mods[1:])
            query = encoded["text"]
            out = self.fusion(
                query["tokens"], query["mask"], context, context_mask, deterministic=deterministic
            )
            result = {"pooled": out["pooled"], "tokens": out["tokens"], "mask": query["mask"]}
            if "context_tokens" in out:
                result["context_tokens"] = out["context_tokens"]
                result["context_mask"] = context_mask
            return result
        pooled = [e["pooled"] for e in mods]
        if self.kind == "graph":
            out = self.fusion(pooled, [e["tokens"] for e in mods], [e["mask"] for e in mods])
        else:
            out = self.fusion(pooled)
        return {k: v for k, v in out.items() if k in ("pooled", "gate", "adjacency")}

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

    def _context(self, mods: list[Mapping[str, Array]]) -> tuple[Array, Array]:
        """Context modalities' tokens / masks concatenated: ``[batch, sc, d]``, ``[batch, sc]``."""
        dims = {e["tokens"].shape[-1] for e in mods}
        tokens = []
        for name, e in zip(self.modalities[1:], mods, strict=True):
            t = e["tokens"]
            if len(dims) > 1 and t.shape[-1] != self.width:
                # zeroed before and after: padding stays out of values and gradients
                t = self.context_proj[name](zero_padding(t, e["mask"]))
                t = zero_padding(t, e["mask"])
            tokens.append(t.astype(self.dtype))
        return jnp.concatenate(tokens, axis=1), jnp.concatenate([e["mask"] for e in mods], axis=1)


def _input(inputs: Mapping[str, Array], key: str, modality: str) -> Array:
    if key not in inputs:
        raise KeyError(
            f"fused model input {key!r} missing (config.model.{modality} is set); "
            f"got {sorted(inputs)}"
        )
    return inputs[key]


def build_fused_model(cfg: Any) -> FusedModel:
    """``FusedModel`` from ``config.model`` (see the module docstring for the keys)."""
    dtype = dtype_from_name(cfg.get("dtype", "float32"))
    impl = cfg.get("attention_impl") or None
    remat = cfg.get("remat", "none")
    memory = dict(remat=remat, scan_layers=bool(cfg.get("scan_layers", False)))
    image = build_image_encoder(cfg.image, dtype, impl, **memory) if cfg.get("image") else None
    text = build_text_encoder(cfg.text, dtype, impl, **memory) if cfg.get("text") else None
    features = {}
    for name, f in (cfg.get("features") or {}).items():
        if not name.isidentifier() or name in ("image", "text"):
            raise ValueError(
                f"config.model.features: name {name!r} must be an identifier other than "
                "'image' / 'text'"
            )
        if f.get("kind") in MEDIA_KINDS:  # a video / audio tower (models/media.py)
            features[name] = build_media_encoder(f, dtype, impl, **memory)
            continue
        for key in ("dim", "max_len", "width", "depth", "num_heads", "mlp_dim"):
            if key not in f:
                raise ValueError(f"config.model.features.{name}: missing {key!r}")
        features[name] = FeatureSequenceEncoder(
            width=f["width"],
            depth=f["depth"],
            num_heads=f["num_heads"],
            mlp_dim=f["mlp_dim"],
            max_len=f["max_len"],
            feature_dim=f["dim"],
            act=f.get("act", "gelu"),
            dropout_rate=f.get("dropout_rate", 0.0),
            dtype=dtype,
            attention_impl=impl,
            **memory,
        )
    fcfg = cfg.get("fusion")
    if not fcfg:
        raise ValueError("config.model.fusion is missing (dict(kind=..., width=..., ...))")
    kind = fcfg.get("kind")
    if kind not in KINDS:
        raise ValueError(f"config.model.fusion.kind: unknown {kind!r}; known: {KINDS}")
    n = (image is not None) + (text is not None) + len(features)
    if n < 2:
        raise ValueError(
            f"config.model.fusion.kind={kind!r} needs at least two modalities (config.model."
            f"image / text / features); got {n}"
        )
    if kind in ("cross_attention", "co_attention") and text is None:
        raise ValueError(
            f"config.model.fusion.kind={kind!r} uses the text as the query: set config.model.text"
        )
    if "width" not in fcfg:
        raise ValueError("config.model.fusion.width is missing")
    width = fcfg["width"]
    act = fcfg.get("act", "gelu")
    transformer = dict(
        width=width,
        depth=fcfg.get("depth", 2),
        num_heads=fcfg.get("num_heads", 4),
        mlp_dim=fcfg.get("mlp_dim", 4 * width),
        act=act,
        dropout_rate=fcfg.get("dropout_rate", 0.0),
        dtype=dtype,
        attention_impl=impl,
        **memory,
    )
    if kind == "early":
        fusion: nn.Module = EarlyFusion(num_modalities=n, **transformer)
    elif kind in ("cross_attention", "co_attention"):
        fusion = CrossAttentionFusion(bidirectional=kind == "co_attention", **transformer)
    elif kind in ("late_concat", "gated"):
        mode = "concat" if kind == "late_concat" else "gated"
        fusion = LateFusion(width, mode=mode, hidden=fcfg.get("hidden", 0), act=act, dtype=dtype)
    elif kind in ("tensor", "tensor_lowrank"):
        rank = fcfg.get("rank", 4) if kind == "tensor_lowrank" else 0
        if kind == "tensor_lowrank" and rank < 1:
            raise ValueError(f"config.model.fusion.rank must be >= 1 for tensor_lowrank: {rank}")
        fusion = TensorFusion(width, hidden=fcfg.get("hidden", 32), rank=rank, dtype=dtype)
    else:
        fusion = GraphFusion(
            width,
            num_layers=fcfg.get("graph_layers", 2),
            adjacency=fcfg.get("adjacency", "learned"),
            clusters_per_modality=fcfg.get("clusters_per_modality", 0),
            act=act,
            dtype=dtype,
        )
    return FusedModel(
        kind=kind,
        width=width,
        fusion=fusion,
        image=image,
        text=text,
        features=features or None,
        dtype=dtype,
    )
