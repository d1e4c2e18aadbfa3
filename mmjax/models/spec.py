"""Typed module specs: each module kind's options and defaults, declared once.

A spec is a frozen, keyword-only dataclass. ``TransformerSpec`` holds what every
transformer stack takes (``layers.TransformerBlock`` / ``layers.Encoder``); each module
kind's spec (``vision.ViTSpec``, ``text.CLIPTextSpec``, ``fusion.early.EarlySpec``, ...)
inherits it where the kind has a transformer and adds its own fields, next to the module
that uses them. A module is built as ``Module(spec)``; a config section becomes a spec in
one call::

    spec = spec_from_config(ViTSpec, config.model.image, key="config.model.image",
                            **runtime_fields(config.model))

Unknown or missing keys and invalid values are a ``ConfigError`` naming the config key.
Defaults live in the spec only: a new option is one field plus its use.

Modules built from a spec subclass ``SpecModule``, which reads a spec field through the
module (``vit.width`` is ``vit.spec.width``), so code that inspects a built module
(export, HF mapping, inference) needs no ``.spec`` hops.
"""

from __future__ import annotations

import dataclasses
import sys
from collections.abc import Mapping
from typing import Any, ClassVar, TypeVar

import flax.linen as nn
import jax.numpy as jnp

from mmjax.config import ConfigError

S = TypeVar("S")

DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16, "float16": jnp.float16}
REMATS = ("none", "full", "dots_saveable")
# Fields set once for the whole model (``config.model.<field>``), not per section.
RUNTIME = ("dtype", "attention_impl", "remat", "scan_layers")


def check_choice(field: str, value: Any, known: tuple) -> None:
    """``ValueError`` naming ``field`` unless ``value`` is one of ``known``."""
    if value not in known:
        raise ValueError(f"{field}: unknown {value!r}; known: {known}")


@dataclasses.dataclass(frozen=True, kw_only=True)
class TransformerSpec:
    """A stack of ``depth`` transformer blocks (``layers.Encoder``); the block fields
    (``layers.TransformerBlock``) apply to every block.

    ``pre_norm``: ViT/CLIP layout (``x + f(ln(x))``) or BERT's (``ln(x + f(x))``);
    ``qkv_bias`` / ``key_bias``: biases on the query/key/value projections (``key_bias=False``:
    none on the keys, BEiT); ``layer_scale``: learned per-channel branch scale initialized
    to this value (pre-norm only; CaiT / BEiT / DINOv2); ``mlp_gated``: GLU MLP (SwiGLU
    with ``act='silu'``); ``attention_impl``: ``jax.nn.dot_product_attention``'s
    implementation (``None`` = XLA's choice); ``remat``: ``'none'`` | ``'full'`` |
    ``'dots_saveable'`` recomputation in the backward pass; ``scan_layers``: one scanned
    block over params stacked on a leading ``layers`` axis.
    """

    depth: int
    num_heads: int
    mlp_dim: int
    pre_norm: bool = True
    act: str = "gelu"
    qkv_bias: bool = True
    key_bias: bool = True
    dropout_rate: float = 0.0
    ln_eps: float = 1e-5
    layer_scale: float | None = None
    mlp_gated: bool = False
    dtype: Any = jnp.float32
    attention_impl: str | None = None
    remat: str = "none"
    scan_layers: bool = False
    # A table of string fields and their known values; each subclass lists its own fields
    # (``__post_init__`` checks those of every class in the MRO).
    choices: ClassVar[dict[str, tuple]] = {"remat": REMATS}

    def __post_init__(self) -> None:
        for cls in type(self).__mro__:
            for field, known in vars(cls).get("choices", {}).items():
                check_choice(field, getattr(self, field), known)
        if self.depth < 0 or self.num_heads < 1 or self.mlp_dim < 1:
            raise ValueError(
                f"depth / num_heads / mlp_dim: need depth >= 0, num_heads >= 1, mlp_dim >= 1; "
                f"got {self.depth}, {self.num_heads}, {self.mlp_dim}"
            )
        if self.layer_scale is not None and not self.pre_norm:
            raise ValueError("layer_scale needs pre_norm=True")

    def transformer(self, **changes: Any) -> TransformerSpec:
        """This spec's transformer fields alone (``changes`` applied): what a sub-stack such
        as a decoder's unimodal layers or a video's temporal encoder takes."""
        fields = {f.name: getattr(self, f.name) for f in dataclasses.fields(TransformerSpec)}
        return TransformerSpec(**{**fields, **changes})


class SpecModule(nn.Module):
    """A module whose options are one ``spec`` field; ``module.<field>`` reads the spec's.

    ``Module.Spec`` is the spec class, read from the ``spec: XSpec`` annotation when the
    subclass is defined (what ``spec_from_config`` builds for it), so it is written once.
    """

    Spec: ClassVar[type]

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        annotation = cls.__dict__.get("__annotations__", {}).get("spec")
        if isinstance(annotation, str):  # ``from __future__ import annotations``
            name, annotation = annotation, vars(sys.modules[cls.__module__]).get(annotation)
            if not isinstance(annotation, type):
                raise TypeError(f"{cls.__name__}.spec: {name!r} is not a module-level class")
        if annotation is not None:
            cls.Spec = annotation

    def __getattr__(self, name: str) -> Any:
        spec = self.__dict__.get("spec")
        if spec is not None and name in getattr(spec, "__dataclass_fields__", {}):
            return getattr(spec, name)
        return super().__getattr__(name)


def dtype_from_name(name: str) -> Any:
    """``'bfloat16'`` -> ``jnp.bfloat16`` (``config.model.dtype``)."""
    try:
        return DTYPES[name]
    except KeyError:
        raise ConfigError(
            f"config.model.dtype: unknown {name!r}; known: {sorted(DTYPES)}"
        ) from None


def runtime_fields(model_cfg: Any) -> dict[str, Any]:
    """The model-wide fields every section's spec takes (``RUNTIME``) from ``config.model``:
    compute dtype, attention implementation, rematerialization and layer scanning."""
    remat = model_cfg.get("remat", "none")
    if remat not in REMATS:
        raise ConfigError(f"config.model.remat: unknown {remat!r}; known: {REMATS}")
    return dict(
        dtype=dtype_from_name(model_cfg.get("dtype", "float32")),
        attention_impl=model_cfg.get("attention_impl") or None,
        remat=remat,
        scan_layers=bool(model_cfg.get("scan_layers", False)),
    )


def _plain(value: Any) -> Any:
    """Config values as hashable spec values: lists -> tuples, ConfigDicts -> dicts."""
    if hasattr(value, "to_dict"):
        value = value.to_dict()
    if isinstance(value, list | tuple):
        return tuple(_plain(v) for v in value)
    return value


def spec_from_config(
    spec_cls: type[S],
    section: Mapping[str, Any],
    key: str,
    ignore: tuple[str, ...] = (),
    **runtime: Any,
) -> S:
    """``spec_cls`` from a config ``section`` (a dict or ConfigDict) plus ``runtime`` fields
    (those the spec has; see ``runtime_fields``). Keys in ``ignore`` belong to someone else
    (``kind``, task-owned ids). Unknown, missing or invalid fields are a ``ConfigError``
    naming ``key``; a runtime field set inside the section is one too (it is model-wide)."""
    fields = {f.name for f in dataclasses.fields(spec_cls) if f.init}
    given = {k: _plain(v) for k, v in dict(section).items() if k not in ignore}
    misplaced = sorted(set(given) & set(runtime))
    if misplaced:
        raise ConfigError(f"{key}: {misplaced} are model-wide: set config.model.<name>")
    unknown = sorted(set(given) - fields)
    if unknown:
        raise ConfigError(
            f"{key}: unknown keys {unknown}; {spec_cls.__name__} takes {sorted(fields)}"
        )
    required = {
        f.name
        for f in dataclasses.fields(spec_cls)
        if f.init and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
    }
    kw = {**given, **{k: v for k, v in runtime.items() if k in fields}}
    missing = sorted(required - set(kw))
    if missing:
        raise ConfigError(f"{key}: missing keys {missing} ({spec_cls.__name__})")
    try:
        return spec_cls(**kw)
    except (TypeError, ValueError) as e:
        raise ConfigError(f"{key}: {e}") from e
