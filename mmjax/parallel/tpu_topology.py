"""TPU slice names users know (``v5e-256``, ``v4-32``) -> jax topology names and chip specs.

``parse_topology('v5p-128')`` gives the jax topology name (``'v5p:4x4x4'``), the number of
chips and the chip's datasheet figures; ``topology_devices`` gives compile-only devices of
that slice on any machine with libtpu installed (no TPU needed). ``use_cpu_backend_for_aot``
sets the environment for that, and ``skip_tpu_probe`` keeps jax from initialising libtpu on
a machine without TPU chips (``mmjax train`` / ``info`` on a CPU or GPU host).
"""

from __future__ import annotations

import dataclasses
import math
import os
import re
from typing import Any

GIB = 1024**3


@dataclasses.dataclass(frozen=True)
class Chip:
    """Per-chip datasheet figures (bf16 peak, HBM, bidirectional ICI)."""

    name: str
    hbm_bytes: int
    peak_flops: float  # bf16 FLOP/s
    hbm_bandwidth: float  # bytes/s
    ici_bandwidth: float  # bytes/s, bidirectional, all ports of one chip
    cores_in_name: bool  # v4 / v5p slice names count TensorCores (2 per chip)
    dims: int  # 2D or 3D torus


# Sources: Cloud TPU system architecture pages, cloud.google.com/tpu/docs/{v4,v5e,v5p,v6e}
# ("Key specifications" tables: peak bf16 compute, HBM capacity and bandwidth, bidirectional
# ICI bandwidth per chip). The v4 page gives no per-chip ICI figure: 6 ports x 90 GB/s
# bidirectional per link, as in "How to Scale Your Model" (jax-ml.github.io/scaling-book,
# TPU chapter). The HBM figures are the datasheet's; XLA keeps a little of it for itself, so
# a program within ~2% of the capacity may still fail to load (compile reports that).
CHIPS: dict[str, Chip] = {
    "v4": Chip("v4", 32 * GIB, 275e12, 1200e9, 6 * 90e9, True, 3),
    "v5e": Chip("v5e", 16 * GIB, 197e12, 819e9, 400e9, False, 2),
    "v5p": Chip("v5p", 95 * GIB, 459e12, 2765e9, 1200e9, True, 3),
    "v6e": Chip("v6e", 32 * GIB, 918e12, 1638e9, 800e9, False, 2),
}
ALIASES = {"v5litepod": "v5e", "v5lite": "v5e", "trillium": "v6e"}


@dataclasses.dataclass(frozen=True)
class Topology:
    name: str  # what the user gave, e.g. 'v5e-256'
    jax_name: str  # e.g. 'v5e:16x16'
    chip: Chip
    num_chips: int  # per slice
    num_slices: int = 1

    @property
    def total_chips(self) -> int:
        return self.num_chips * self.num_slices


def _shape(chips: int, dims: int) -> tuple[int, ...]:
    """Chips -> the slice's torus shape: powers of two, as even as possible (``16 -> 4x4``,
    ``64 -> 4x4x4``, ``32 -> 2x4x4``); 3D slices of 4 chips are ``2x2x1``, as Cloud TPU names
    them."""
    if chips < 1 or chips & (chips - 1):
        raise ValueError(f"a TPU slice has a power-of-two number of chips, got {chips}")
    shape = [1] * dims
    i = 0
    while math.prod(shape) < chips:
        shape[i % dims] *= 2
        i += 1
    shape.sort()
    while shape[0] == 1 and len(shape) > 1 and shape[-1] > 1:
        shape = shape[1:] + [1]
    return tuple(shape)


def parse_topology(name: str, num_slices: int = 1) -> Topology:
    """``'v5e-256'`` (Cloud TPU accelerator type), ``'v5litepod-16'`` or a jax topology name
    (``'v5e:4x4'``) -> ``Topology``; an unknown name is a ``ValueError`` listing the known."""
    if num_slices < 1:
        raise ValueError(f"--num-slices must be >= 1, got {num_slices}")
    known = f"known chips: {sorted(CHIPS)}, e.g. v5e-256, v4-32, v5p-128, v6e-64 or v5e:4x4"
    m = re.fullmatch(r"([a-z0-9]+?)(?:-(\d+)|:(\d+(?:x\d+)*))", name.strip().lower())
    if not m:
        raise ValueError(f"--topology {name!r}: not a TPU slice name; {known}")
    kind = ALIASES.get(m.group(1), m.group(1))
    if kind not in CHIPS:
        raise ValueError(f"--topology {name!r}: unknown TPU {m.group(1)!r}; {known}")
    chip = CHIPS[kind]
    if m.group(3):
        shape = tuple(int(s) for s in m.group(3).split("x"))
        chips = math.prod(shape)
    else:
        count = int(m.group(2))
        if chip.cores_in_name and count % 2:
            raise ValueError(f"--topology {name!r}: {kind} names count 2 cores per chip")
        chips = count // 2 if chip.cores_in_name else count
        try:
            shape = _shape(chips, chip.dims)
        except ValueError as e:
            raise ValueError(f"--topology {name!r}: {e}") from None
    jax_name = f"{kind}:" + "x".join(str(s) for s in shape)
    return Topology(name, jax_name, chip, chips, num_slices)


def use_cpu_backend_for_aot() -> None:
    """Before jax is imported: the local backend is the CPU (nothing runs on, or locks, a TPU
    this host may have: a job may be training on it), and libtpu may be loaded next to
    another process that holds it, since compiling for a topology touches no chip."""
    os.environ["JAX_PLATFORMS"] = "cpu"
    os.environ.setdefault("ALLOW_MULTIPLE_LIBTPU_LOAD", "1")
    os.environ.setdefault("TPU_SKIP_MDS_QUERY", "1")  # no GCE metadata server off a TPU VM


def skip_tpu_probe() -> None:
    """Before jax's backends start: where libtpu is installed but the host has no TPU chip,
    pin ``JAX_PLATFORMS`` to the accelerators it does have, so jax does not load libtpu (its
    probe costs seconds and logs a lockfile error while another jax process holds libtpu).
    A ``JAX_PLATFORMS`` the user set is kept."""
    if "JAX_PLATFORMS" in os.environ:
        return
    import importlib.util

    if importlib.util.find_spec("libtpu") is None:
        return
    from jax._src import hardware_utils  # no backend starts on import

    if hardware_utils.num_available_tpu_chips_and_device_id()[0]:
        return
    platforms = "cuda,cpu" if hardware_utils.has_visible_nvidia_gpu() else "cpu"
    os.environ["JAX_PLATFORMS"] = platforms
    import jax  # read JAX_PLATFORMS at import; if it was imported before, tell it now

    jax.config.update("jax_platforms", platforms)


def topology_devices(topology: Topology) -> list[Any]:
    """Compile-only devices of the slice(s) (needs libtpu: ``pip install 'mmjax[tpu]'``)."""
    import jax
    from jax.experimental import topologies

    kwargs = {"num_slices": topology.num_slices} if topology.num_slices > 1 else {}
    try:
        desc = topologies.get_topology_desc(
            topology_name=topology.jax_name, platform="tpu", **kwargs
        )
    except (RuntimeError, jax.errors.JaxRuntimeError) as e:
        raise ValueError(
            f"--topology {topology.name} ({topology.jax_name}): libtpu cannot describe it "
            f"({str(e).splitlines()[0]}); is libtpu installed (pip install 'mmjax[tpu]')?"
        ) from None
    return list(desc.devices)
