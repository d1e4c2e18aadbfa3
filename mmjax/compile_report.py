"""Ahead-of-time compile of the train step, with XLA's memory and FLOP estimates.

``aot_compile(jitted, state, batch, ...)`` runs ``jitted.lower(...).compile()`` and (on
process 0) prints ``memory_analysis()`` (bytes per device: arguments, outputs, temporaries,
generated code), XLA's ``cost_analysis()`` FLOPs and the analytic FLOPs per step
(``mmjax.flops``), so a run that does not fit fails at compile time with numbers.
The returned executable is what the loop calls.
"""

from __future__ import annotations

import time
from typing import Any

import jax

from mmjax.flops import two_tower_train_flops

MEMORY_FIELDS = (
    ("arguments", "argument_size_in_bytes"),
    ("outputs", "output_size_in_bytes"),
    ("temporaries", "temp_size_in_bytes"),
    ("generated code", "generated_code_size_in_bytes"),
    ("aliased (donated)", "alias_size_in_bytes"),
)


def human_bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(n) < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.2f} {unit}"
        n /= 1024
    return f"{n:.2f} GiB"


def memory_bytes(compiled: Any) -> dict[str, int]:
    """``{field: bytes}`` of ``compiled.memory_analysis()`` (per device); ``{}`` where the
    backend gives none."""
    try:
        analysis = compiled.memory_analysis()
    except (NotImplementedError, RuntimeError):
        return {}
    if analysis is None:
        return {}
    return {
        name: int(getattr(analysis, attr))
        for name, attr in MEMORY_FIELDS
        if getattr(analysis, attr, None) is not None
    }


def xla_flops(compiled: Any) -> float | None:
    """FLOPs XLA counts for one call (per device program), or ``None``."""
    try:
        cost = compiled.cost_analysis()
    except (NotImplementedError, RuntimeError):
        return None
    if isinstance(cost, list | tuple):
        cost = cost[0] if cost else None
    return float(cost["flops"]) if cost and "flops" in cost else None


def analytic_flops(model_cfg: Any, batch_size: int) -> int | None:
    """``flops.two_tower_train_flops`` where the model is a ViT/transformer two-tower."""
    try:
        return two_tower_train_flops(model_cfg, batch_size)
    except (AttributeError, KeyError, TypeError):
        return None


def report(compiled: Any, seconds: float, model_cfg: Any = None, batch_size: int = 0) -> list[str]:
    """The printed lines: compile time, memory per device, FLOPs per step."""
    lines = [f"train step compiled in {seconds:.1f}s; memory per device (XLA):"]
    mem = memory_bytes(compiled)
    if not mem:
        lines.append("  (not reported by this backend)")
    for name, n in mem.items():
        lines.append(f"  {name:<18} {human_bytes(n):>12}")
    flops = xla_flops(compiled)
    analytic = analytic_flops(model_cfg, batch_size) if model_cfg is not None else None
    if analytic is not None:
        lines.append(f"FLOPs per step: analytic {analytic / 1e9:.3f} GFLOP (global batch)")
    if flops is not None:
        lines.append(f"FLOPs per step: XLA cost_analysis {flops / 1e9:.3f} GFLOP (per device)")
    return lines


def aot_compile(
    jitted: Any, *args: Any, model_cfg: Any = None, batch_size: int = 0, verbose: bool = True
) -> Any:
    """``jitted.lower(*args).compile()``; prints ``report`` on process 0 when ``verbose``."""
    t0 = time.perf_counter()
    compiled = jitted.lower(*args).compile()
    if verbose and jax.process_index() == 0:
        print("\n".join(report(compiled, time.perf_counter() - t0, model_cfg, batch_size)))
    return compiled
