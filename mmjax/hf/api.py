"""``load`` / ``save`` of Hugging Face checkpoints and the ``mmjax convert`` conversions."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from mmjax.hf import config_export, config_map, formats, keymap
from mmjax.hf.hub import resolve
from mmjax.hf.modules import HFBert, HFResNet, HFVisionModel, HFViT
from mmjax.models.towers import TwoTower

HF_CONFIG = "hf_config.json"  # beside an orbax checkpoint written by `mmjax convert --hf`


def read_config(directory: str | Path, overrides: dict[str, Any] | None = None) -> dict:
    """``DIR/config.json`` with ``overrides`` merged in (nested dicts merge key by key)."""
    path = Path(directory) / "config.json"
    if not path.is_file():
        raise FileNotFoundError(f"no config.json in {directory}")
    try:
        cfg = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}: not valid JSON ({e})") from e
    return _merge(cfg, overrides or {})


def _merge(base: dict, extra: dict) -> dict:
    out = dict(base)
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


def dummy_inputs(module: nn.Module) -> tuple[tuple, dict]:
    """Smallest ``(args, kwargs)`` that ``module.init`` accepts (shapes fix the params)."""
    if isinstance(module, TwoTower):
        n = module.image.image_size
        ctx = module.text.context_length
        return (jnp.zeros((1, n, n, 3)), jnp.zeros((1, ctx), jnp.int32)), {}
    if isinstance(module, HFViT | HFVisionModel):
        n = module.image.image_size
        return (jnp.zeros((1, n, n, 3)),), {}
    if isinstance(module, HFBert):
        return (jnp.zeros((1, min(8, module.text.context_length)), jnp.int32),), {}
    if isinstance(module, HFResNet):
        return (jnp.zeros((1, 32, 32, 3)),), {}
    raise TypeError(f"no dummy inputs for {type(module).__name__}")


def flatten(tree: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(tree, dict):
        out = {}
        for key, value in tree.items():
            out.update(flatten(value, f"{prefix}{key}/"))
        return out
    return {prefix[:-1]: tree}


def unflatten(flat: dict[str, Any]) -> dict[str, Any]:
    tree: dict[str, Any] = {}
    for path, value in flat.items():
        node = tree
        *parents, leaf = path.split("/")
        for p in parents:
            node = node.setdefault(p, {})
        node[leaf] = value
    return tree


def _init(module: nn.Module, rng: jax.Array) -> dict[str, Any]:
    args, kwargs = dummy_inputs(module)
    return nn.unbox(module.init(rng, *args, **kwargs))


def load(
    path_or_id: str | Path,
    dtype: Any = jnp.float32,
    *,
    overrides: dict[str, Any] | None = None,
    dont_load: tuple[str, ...] | list[str] = (),
    allow_network: bool = False,
    rng: jax.Array | None = None,
    scan_layers: bool = False,
) -> tuple[nn.Module, dict[str, Any]]:
    """Loads an HF model directory (or cached Hub id) as ``(module, variables)``.

    ``variables`` is ``{'params': ...}`` (plus ``'batch_stats'`` for ResNet) with arrays
    in ``dtype``, which is also the module's compute dtype. ``overrides`` edit the
    ``config.json`` before the module is built, e.g. ``{'image_size': 384}`` (positions are
    resampled) or ``{'num_labels': 10}`` together with ``dont_load=['head/.*']`` (those
    params are freshly initialized from ``rng``). Raises ``keymap.HFLoadError`` naming
    every missing, unexpected or mis-shaped key. ``scan_layers=True`` returns a module whose
    encoders scan over their blocks, with the per-layer weights stacked (``layers/block``).
    """
    directory = resolve(path_or_id, allow_network=allow_network)
    cfg = read_config(directory, overrides)
    weights = formats.find_weights(directory)
    tensors = formats.read_weights(weights)
    module, table = config_map.build(cfg, dtype, set(tensors))
    if scan_layers:
        module = with_scan_layers(module)
    abstract = jax.eval_shape(lambda: _init(module, jax.random.PRNGKey(0)))
    targets = keymap.unstack_layers({k: tuple(v.shape) for k, v in flatten(abstract).items()})
    values, left = keymap.to_mm(tensors, table, targets, dont_load, source=str(weights))
    if left:  # dont_load: fresh init for what was skipped
        fresh = flatten(_init(module, jax.random.PRNGKey(0) if rng is None else rng))
        fresh = keymap.unstack_layers({k: np.asarray(v) for k, v in fresh.items()})
        values.update({k: fresh[k] for k in left})
    if scan_layers:
        values = keymap.stack_layers(values)
    variables = {k: jnp.asarray(v, dtype) for k, v in values.items()}
    return module, unflatten(variables)


def with_scan_layers(module: nn.Module, scan: bool = True) -> nn.Module:
    """``module`` with ``scan_layers=scan`` in the spec of every sub-module whose spec has
    the field (``models/spec.py``)."""
    changes = {}
    for f in dataclasses.fields(module):
        value = getattr(module, f.name, None)
        if f.name == "spec" and "scan_layers" in getattr(value, "__dataclass_fields__", {}):
            changes[f.name] = dataclasses.replace(value, scan_layers=scan)
        elif isinstance(value, nn.Module):
            changes[f.name] = with_scan_layers(value, scan)
    return module.clone(**changes) if changes else module


def save(path: str | Path, module: nn.Module, variables: dict[str, Any]) -> Path:
    """Writes ``config.json`` + ``model.safetensors`` (fp32) that transformers'
    ``from_pretrained`` loads into the matching class. Returns the directory."""
    path = Path(path)
    cfg, table, with_prefix = config_export.hf_config(module)
    flat = {k: np.asarray(v, np.float32) for k, v in flatten(nn.unbox(variables)).items()}
    flat = keymap.unstack_layers(flat)  # a scanned model's stacked layers
    tensors = keymap.to_hf(flat, table, with_prefix)
    path.mkdir(parents=True, exist_ok=True)
    cfg = dict(cfg, torch_dtype="float32")
    (path / "config.json").write_text(json.dumps(cfg, indent=2, sort_keys=True) + "\n")
    formats.write_safetensors(path / formats.SAFETENSORS, tensors)
    return path
