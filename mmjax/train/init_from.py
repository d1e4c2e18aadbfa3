"""``config.init_from``: start a run from another run's params or a Hugging Face model.

``init_from`` is ``''`` (off), a path to another mmjax run's workdir, its
``checkpoints/`` directory or one step directory in it (the latest step's params,
trainable and frozen, are taken), or ``hf:<path or id>`` (``mmjax.hf.load``).
Every param whose path is in both trees is loaded, except those matching one of
the ``init_from_dont_load`` regexes (``re.fullmatch`` on ``/``-joined paths); the
rest keep their fresh init. A shape mismatch is an error naming the param.
The trainer applies it after init and before the first step, and only when the
run does not resume from its own checkpoint.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from mmjax.optim.param_rules import ParamPlan, flat_params, merge_params, unflat_params
from mmjax.train.checkpoint import latest_step_dir, read_state


def load_checkpoint_params(path: str | Path) -> dict[str, np.ndarray]:
    """Flat ``{path: array}`` of the params (trainable and frozen) in an mmjax checkpoint."""
    try:
        step_dir = latest_step_dir(path)
    except FileNotFoundError as e:
        raise FileNotFoundError(f"config.init_from: {e}") from None
    state = read_state(step_dir)
    params = merge_params(state["params"], state.get("frozen") or {})
    return {k: np.asarray(v) for k, v in flat_params(params).items()}


def load_source_params(spec: str) -> dict[str, np.ndarray]:
    """Flat params named by an ``init_from`` value (``hf:...`` or a checkpoint path)."""
    if spec.startswith("hf:"):
        from mmjax import hf  # lazily: only runs that ask for it need the HF code

        _, variables = hf.load(spec[len("hf:") :])
        return {k: np.asarray(v) for k, v in flat_params(variables["params"]).items()}
    return load_checkpoint_params(spec)


def select_params(
    target: Mapping[str, Any], source: Mapping[str, Any], dont_load: Sequence[str] = ()
) -> tuple[dict[str, Any], dict[str, list[str]]]:
    """``(loaded, report)``: the source arrays to load into the flat ``target``, and lists
    of paths ``loaded``, ``skipped`` (by ``dont_load``), ``new`` (not in the source, kept
    fresh) and ``unused`` (in the source only). Raises on a shape mismatch."""
    patterns = [re.compile(p) for p in dont_load]
    report: dict[str, list[str]] = {"loaded": [], "skipped": [], "new": [], "unused": []}
    loaded = {}
    for path, leaf in target.items():
        if any(p.fullmatch(path) for p in patterns):
            report["skipped"].append(path)
        elif path not in source:
            report["new"].append(path)
        else:
            want, got = tuple(np.shape(leaf)), tuple(np.shape(source[path]))
            if want != got:
                raise ValueError(
                    f"config.init_from: param {path!r} has shape {got} in the source "
                    f"but {want} in the model"
                )
            loaded[path] = source[path]
            report["loaded"].append(path)
    report["unused"] = [p for p in source if p not in target]
    return loaded, report


def format_report(report: Mapping[str, list[str]], shapes: Mapping[str, Any], spec: str) -> str:
    """Counts (tensors, parameters) per outcome, with a few example paths."""
    lines = [f"init_from {spec}:"]
    for kind, paths in report.items():
        n = sum(int(np.prod(np.shape(shapes[p]))) for p in paths if p in shapes)
        size = f", {n:,} params" if kind != "unused" else ""
        example = f"  e.g. {', '.join(paths[:3])}" if paths else ""
        lines.append(f"  {kind:<8} {len(paths):>5} tensors{size}{example}")
    return "\n".join(lines)


def match_layer_layout(source: dict[str, Any], target: Mapping[str, Any]) -> dict[str, Any]:
    """``source`` params stacked (``layers/block``, ``model.scan_layers``) or unstacked
    (``layer_{i}``) as ``target`` is, so either layout loads into either model."""
    from mmjax.hf.keymap import stack_layers, unstack_layers

    def scanned(flat: Mapping[str, Any]) -> bool:
        return any("/layers/block/" in p for p in flat)

    if scanned(target) and not scanned(source):
        return stack_layers({k: np.asarray(v) for k, v in source.items()})
    if scanned(source) and not scanned(target):
        return unstack_layers({k: np.asarray(v) for k, v in source.items()})
    return source


def init_state_from(
    state: Any,
    shardings: Any,
    plan: ParamPlan,
    spec: str,
    dont_load: Sequence[str] = (),
    inflate: str = "average",
) -> Any:
    """``state`` with params from ``spec`` put onto ``shardings``; the EMA restarts there.
    An image tower's 2-D patch kernels load into a video tower's tubelet kernels inflated
    by ``inflate`` (``config.init_from_inflate``: ``models.video.inflate_kernel``)."""
    from mmjax.models.video import inflate_image_params

    full = flat_params(state.full_params())
    source = match_layer_layout(load_source_params(spec), full)
    source = inflate_image_params(source, full, inflate)
    loaded, report = select_params(full, source, dont_load)
    if jax.process_index() == 0:
        print(format_report(report, full, spec))
    shard_of = flat_params(shardings.full_params())
    for path, value in loaded.items():
        full[path] = jax.device_put(value.astype(full[path].dtype), shard_of[path])
    trainable, frozen = plan.split(unflat_params(full))
    ema = {}
    if state.ema:
        ema = jax.jit(lambda t: jax.tree.map(jnp.copy, t), out_shardings=shardings.ema)(trainable)
    return state.replace(params=trainable, frozen=frozen, ema=ema)
