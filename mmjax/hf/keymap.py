"""Declarative key tables: Hugging Face key <-> mmjax variable path, used in both directions.

A ``Rule`` pairs an HF key template (PyTorch naming, ``{i}`` for layer indices) with an
mmjax path template (``params/image/encoder/layer_{i}/attn/query/kernel`` or
``batch_stats/...``) and a ``Transform``. ``to_mm`` turns a checkpoint into mmjax
variables and reports every missing, unexpected and mis-shaped key by name; ``to_hf``
turns mmjax variables back into a checkpoint. The tables name layers unstacked
(``layer_{i}``), so one templated rule covers every layer; a scanned model
(``model.scan_layers``: ``layers/block/...`` leaves ``[depth, ...]``) goes through
``unstack_layers`` / ``stack_layers`` around them.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from mmjax.hf.transforms import IDENTITY, Chunk, Transform, resample_posemb


class HFLoadError(ValueError):
    """A checkpoint that does not fit the model; the message lists the keys."""


@dataclass(frozen=True)
class Rule:
    """One HF key template <-> one mmjax path template.

    ``base``: part of the base model (carries ``base_model_prefix`` in head checkpoints).
    ``posemb_prefix``: learned positions with that many non-grid (class) rows, resampled
    when the grid differs. ``read_only``: an alias read on load, never written.
    """

    hf: str
    mm: str
    transform: Transform = IDENTITY
    base: bool = True
    posemb_prefix: int | None = None
    read_only: bool = False


def _regex(template: str) -> re.Pattern:
    parts = re.split(r"\{(\w+)\}", template)
    out = "".join(re.escape(p) if i % 2 == 0 else f"(?P<{p}>\\d+)" for i, p in enumerate(parts))
    return re.compile(out)


@dataclass
class KeyTable:
    """The rules of one architecture, its ``base_model_prefix`` and the HF keys to ignore
    (buffers such as ``position_ids``, copies of tied weights), as regexes."""

    name: str
    rules: list[Rule]
    prefix: str = ""
    ignore: tuple[str, ...] = ()
    _compiled: list = field(default_factory=list, repr=False)

    def __post_init__(self) -> None:
        self._compiled = [(r, _regex(r.hf), _regex(r.mm)) for r in self.rules]

    def hf_matches(self, key: str) -> list[tuple[Rule, str]]:
        """Rules matching HF ``key`` (prefix already stripped) -> ``[(rule, mmjax path)]``."""
        out = []
        for rule, hf_re, _ in self._compiled:
            m = hf_re.fullmatch(key)
            if m:
                out.append((rule, rule.mm.format(**m.groupdict())))
        return out

    def mm_match(self, path: str) -> tuple[Rule, str] | None:
        """The writable rule for mmjax ``path`` -> ``(rule, HF key without prefix)``."""
        for rule, _, mm_re in self._compiled:
            m = None if rule.read_only else mm_re.fullmatch(path)
            if m:
                return rule, rule.hf.format(**m.groupdict())
        return None


def _matches_any(patterns: Iterable[str], *names: str) -> bool:
    return any(re.fullmatch(p, n) for p in patterns for n in names)


def _short(path: str) -> str:
    """``params/image/x`` -> ``image/x`` (dont_load patterns may omit the collection)."""
    return path.partition("/")[2]


def to_mm(
    tensors: dict[str, np.ndarray],
    table: KeyTable,
    targets: dict[str, tuple[int, ...]],
    dont_load: Iterable[str] = (),
    source: str = "checkpoint",
) -> tuple[dict[str, np.ndarray], list[str]]:
    """Checkpoint ``{HF key: array}`` -> ``{mmjax path: array}`` shaped as ``targets``.

    ``dont_load`` regexes (full match on the mmjax path with or without its
    ``params/`` collection, or on the HF key) name variables to leave to fresh init,
    e.g. a classifier whose size changes. Returns the values and the mmjax paths left
    to init; raises ``HFLoadError`` naming every missing, unexpected and mis-shaped key.
    """
    dont_load = tuple(dont_load)
    values: dict[str, np.ndarray] = {}
    unexpected, misshaped = [], []
    strip = table.prefix + "." if table.prefix else None
    for key in sorted(tensors):
        array = tensors[key]
        name = key[len(strip) :] if strip and key.startswith(strip) else key
        if _matches_any(table.ignore, name):
            continue
        matches = table.hf_matches(name)
        if not matches:
            if not _matches_any(dont_load, key, name):
                unexpected.append(f"{key} {tuple(array.shape)}")
            continue
        for rule, path in matches:
            if _matches_any(dont_load, path, _short(path), key, name):
                continue
            if path not in targets:
                unexpected.append(f"{key} {tuple(array.shape)} (the model has no {path})")
                continue
            if path in values:  # an alias of a key already read (a tied copy)
                continue
            shape = tuple(targets[path])
            try:
                values[path] = rule.transform.to_mm(array, shape)
            except ValueError:
                if rule.posemb_prefix is not None and array.ndim >= 2:
                    flat = array.reshape(-1, array.shape[-1])
                    try:
                        values[path] = resample_posemb(flat, rule.posemb_prefix, shape)
                        continue
                    except ValueError:
                        pass
                misshaped.append(f"{key} {tuple(array.shape)} -> {path} expects {shape}")
    left = [p for p in targets if p not in values]
    missing = [p for p in left if not _matches_any(dont_load, p, _short(p))]
    if missing or unexpected or misshaped:
        lines = [f"{source} does not fit the {table.name} model:"]
        for label, keys in (
            ("missing (in the model, not in the checkpoint)", missing),
            ("unexpected (in the checkpoint, not in the model)", unexpected),
            ("mis-shaped", misshaped),
        ):
            if keys:
                lines.append(f"  {label}: {len(keys)}")
                lines.extend(f"    {k}" for k in keys)
        lines.append("  (dont_load=[regex, ...] skips keys whose params are to be re-initialized)")
        raise HFLoadError("\n".join(lines))
    return values, left


def to_hf(
    variables: dict[str, np.ndarray], table: KeyTable, with_prefix: bool
) -> dict[str, np.ndarray]:
    """``{mmjax path: array}`` -> ``{HF key: array}``; fused tensors (``Chunk``) are
    concatenated. Base-model keys get ``table.prefix`` when ``with_prefix`` (head models)."""
    out: dict[str, np.ndarray] = {}
    parts: dict[str, dict[int, np.ndarray]] = {}
    unmapped = []
    for path, value in variables.items():
        found = table.mm_match(path)
        if found is None:
            unmapped.append(path)
            continue
        rule, key = found
        if with_prefix and table.prefix and rule.base:
            key = f"{table.prefix}.{key}"
        array = rule.transform.to_hf(np.asarray(value))
        if isinstance(rule.transform, Chunk):
            parts.setdefault(key, {})[rule.transform.index] = array
        else:
            out[key] = array
    if unmapped:
        raise HFLoadError(
            f"no {table.name} checkpoint key for mmjax variables: " + ", ".join(unmapped)
        )
    for key, chunks in parts.items():
        out[key] = np.concatenate([chunks[i] for i in sorted(chunks)])
    return out


_LAYER = re.compile(r"(.*)/layer_(\d+)/(.*)")
_STACKED = re.compile(r"(.*)/layers/block/(.*)")


def stack_layers(flat: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """``.../layer_{i}/x`` -> ``.../layers/block/x`` stacked on a new leading axis (the
    layout of a scanned ``layers.Encoder``); other paths pass through."""
    out: dict[str, np.ndarray] = {}
    groups: dict[str, dict[int, np.ndarray]] = {}
    for path, value in flat.items():
        m = _LAYER.fullmatch(path)
        if m is None:
            out[path] = value
        else:
            groups.setdefault(f"{m[1]}/layers/block/{m[3]}", {})[int(m[2])] = value
    for path, layers in groups.items():
        if sorted(layers) != list(range(len(layers))):
            raise HFLoadError(f"{path}: layers {sorted(layers)} are not 0..{len(layers) - 1}")
        out[path] = np.stack([np.asarray(layers[i]) for i in range(len(layers))])
    return out


def unstack_layers(flat: dict[str, Any]) -> dict[str, Any]:
    """Inverse of ``stack_layers``: ``.../layers/block/x`` ``[depth, ...]`` -> ``.../layer_{i}/x``.
    Values may be arrays or shapes (tuples: the leading dim is dropped)."""
    out: dict[str, Any] = {}
    for path, value in flat.items():
        m = _STACKED.fullmatch(path)
        if m is None:
            out[path] = value
            continue
        for i in range(value[0] if isinstance(value, tuple) else value.shape[0]):
            out[f"{m[1]}/layer_{i}/{m[2]}"] = value[1:] if isinstance(value, tuple) else value[i]
    return out
