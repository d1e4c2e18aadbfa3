"""Device meshes, logical axis rules and shardings for params, state and batches.

Modules name the axes of their params logically (``embed``, ``mlp``, ``heads``, ``kv``,
``vocab``, ...) and the axes of their activations and batches with separate names
(``activation_batch``, ``activation_length``, ``activation_embed``, ...), so that a param's
``embed`` axis can be split over ``fsdp`` while the activations' stays whole.
``DEFAULT_RULES`` maps every name to the mesh axes ``data``, ``fsdp`` and ``tensor``;
``config.mesh.rules`` overrides entries of it by name (``[('activation_length', 'tensor')]``
is sequence parallelism, everything else as default). One device and a pod slice run the
same code: on one device every axis has size 1.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from mmjax.config import ConfigError

logger = logging.getLogger("mmjax")
MAX_NOTES = 12  # divisibility notes printed in full; the rest are counted

MESH_AXES = ("data", "fsdp", "tensor")

# Logical name -> mesh axes. Batches split over data x fsdp; params over fsdp
# (ZeRO-3 style) and tensor (Megatron style). With fsdp = tensor = 1 this is
# plain data parallelism.
PARAM_RULES: tuple[tuple[str, Any], ...] = (
    ("embed", "fsdp"),
    ("mlp", "tensor"),
    ("heads", "tensor"),
    ("kv", None),
    ("vocab", "tensor"),
    ("proj", None),
    ("patch", None),
    ("layers", None),  # the stacked-layers axis of scanned encoders (model.scan_layers)
)
ACTIVATION_RULES: tuple[tuple[str, Any], ...] = (
    ("activation_batch", ("data", "fsdp")),  # also every input batch's leading axis
    ("activation_length", None),  # sequence positions ('tensor' = sequence parallelism)
    ("activation_embed", None),
    ("activation_mlp", "tensor"),
    ("activation_heads", "tensor"),
    ("activation_kv", None),
    ("activation_vocab", "tensor"),  # decoder logits
)
DEFAULT_RULES: tuple[tuple[str, Any], ...] = ACTIVATION_RULES + PARAM_RULES
BATCH_AXIS = "activation_batch"


class MeshError(ValueError):
    """``config.mesh`` does not fit the devices there are; the message names both."""


def mesh_shape(mesh_cfg: Any, num_devices: int) -> dict[str, int]:
    """Resolves ``{'data': -1, 'fsdp': 1, 'tensor': 1}`` against ``num_devices`` (-1 fills)."""
    sizes = {axis: int(mesh_cfg.get(axis, 1)) for axis in MESH_AXES}
    fill = [axis for axis, size in sizes.items() if size == -1]
    if len(fill) > 1:
        raise MeshError(f"config.mesh: only one axis may be -1, got {sizes}")
    if any(size == 0 or size < -1 for size in sizes.values()):
        raise MeshError(f"config.mesh: axis sizes must be positive or -1, got {sizes}")
    fixed = math.prod(size for size in sizes.values() if size != -1)
    if fill:
        if num_devices % fixed:
            raise MeshError(
                f"config.mesh asks for {sizes}: the fixed axes need a multiple of {fixed} "
                f"devices, but there are {num_devices}"
            )
        sizes[fill[0]] = num_devices // fixed
    elif fixed != num_devices:
        raise MeshError(
            f"config.mesh asks for {sizes} = {fixed} devices, but there are {num_devices}"
        )
    return sizes


def make_mesh(mesh_cfg: Any, devices: Sequence[jax.Device] | None = None) -> Mesh:
    """A ``Mesh`` over ``MESH_AXES`` with Auto axis types (so sharding constraints apply)."""
    devices = list(jax.devices() if devices is None else devices)
    sizes = mesh_shape(mesh_cfg, len(devices))
    shape = tuple(sizes[a] for a in MESH_AXES)
    auto = (jax.sharding.AxisType.Auto,) * len(MESH_AXES)
    # jax.make_mesh orders devices for the physical topology (ICI rings on TPU).
    return jax.make_mesh(shape, MESH_AXES, axis_types=auto, devices=devices)


def logical_rules(mesh_cfg: Any) -> tuple[tuple[str, Any], ...]:
    """``DEFAULT_RULES`` with the entries of ``config.mesh.rules`` put in by name (a new
    name is appended); a name listed twice in ``config.mesh.rules`` is an error."""
    overrides = [
        (name, tuple(axes) if isinstance(axes, list) else axes)
        for name, axes in mesh_cfg.get("rules", ())
    ]
    names = [name for name, _ in overrides]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise ConfigError(f"config.mesh.rules: logical axes listed more than once: {duplicates}")
    for name, axes in overrides:
        for axis in axes if isinstance(axes, tuple) else (axes,):
            if axis is not None and axis not in MESH_AXES:
                raise ConfigError(
                    f"config.mesh.rules: {name!r} maps to unknown mesh axis {axis!r}; "
                    f"known: {MESH_AXES}"
                )
    merged = dict(DEFAULT_RULES)
    merged.update(overrides)
    return tuple(merged.items())


def _fit_spec(spec: PartitionSpec, shape: tuple[int, ...], mesh: Mesh) -> tuple[PartitionSpec, str]:
    """Drops mesh axes from dims they do not divide; returns the spec and a note (or '')."""
    dims, notes = [], []
    for i, axes in enumerate(tuple(spec) + (None,) * (len(shape) - len(spec))):
        names = () if axes is None else (axes if isinstance(axes, tuple) else (axes,))
        size = math.prod(mesh.shape[a] for a in names)
        if names and shape[i] % size:
            notes.append(f"dim {i} ({shape[i]}) not divisible by {'x'.join(names)}={size}")
            axes = None
        dims.append(axes)
    return PartitionSpec(*dims), "; ".join(notes)


def logical_shardings(abstract_boxed: Any, mesh: Mesh, rules: Any) -> Any:
    """Tree of ``NamedSharding`` for a tree holding ``nn.LogicallyPartitioned`` boxes.

    Unboxed leaves (optimizer counters, the step, the RNG key) are replicated.
    A dimension that its mesh axes do not divide is replicated instead, with a
    logged note naming the param (a 1000-way vocab on an 8-way axis, say).
    """
    specs = nn.logical_to_mesh(nn.get_partition_spec(abstract_boxed), rules)
    is_box = lambda x: isinstance(x, nn.Partitioned)  # noqa: E731
    shapes = jax.tree.map(lambda x: x.value if is_box(x) else x, abstract_boxed, is_leaf=is_box)
    notes = []

    def to_sharding(path: Any, spec: Any, leaf: Any) -> NamedSharding:
        spec = spec if isinstance(spec, PartitionSpec) else PartitionSpec()
        spec, note = _fit_spec(spec, tuple(getattr(leaf, "shape", ())), mesh)
        if note:
            notes.append(f"{jax.tree_util.keystr(path, simple=True, separator='/')}: {note}")
        return NamedSharding(mesh, spec)

    shardings = jax.tree_util.tree_map_with_path(
        to_sharding, specs, shapes, is_leaf=lambda x: isinstance(x, PartitionSpec) or x is None
    )
    if notes and jax.process_index() == 0:
        shown = notes[:MAX_NOTES] + (
            [f"... and {len(notes) - MAX_NOTES} more"] if len(notes) > MAX_NOTES else []
        )
        logger.warning(
            "replicated %d dims that do not divide their mesh axes:\n  %s",
            len(notes),
            "\n  ".join(shown),
        )
    return shardings


def batch_sharding(mesh: Mesh, rules: Any = None) -> NamedSharding:
    """Leading (batch) axis split as ``rules`` map ``activation_batch``, the rest replicated;
    ``rules=None``: the rules of the enclosing ``nn.logical_axis_rules`` (the train loop's
    and eval's), else ``DEFAULT_RULES``."""
    rules = rules if rules is not None else (nn.get_logical_axis_rules() or DEFAULT_RULES)
    return NamedSharding(mesh, PartitionSpec(*nn.logical_to_mesh_axes((BATCH_AXIS,), rules)))


def replicated(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, PartitionSpec())


def global_batch(
    local: dict[str, np.ndarray], mesh: Mesh, rules: Any = None
) -> dict[str, jax.Array]:
    """This process's share of a batch -> global arrays sharded over the batch axis
    (``batch_sharding(mesh, rules)``)."""
    sharding = batch_sharding(mesh, rules)
    return {k: jax.make_array_from_process_local_data(sharding, v) for k, v in local.items()}
