"""Ahead-of-time compile of the train step, with XLA's memory and FLOP estimates.

``aot_compile(jitted, state, batch, ...)`` runs ``jitted.lower(...).compile()`` and (on
process 0) prints ``memory_analysis()`` (bytes per device: arguments, outputs, temporaries,
generated code), XLA's ``cost_analysis()`` FLOPs and the analytic FLOPs per step of the
config's task (``mmjax.flops``: every encoder, fusion and task kind), so a run that does
not fit fails at compile time with numbers. With ``model.scan_layers`` XLA counts a
scanned stack's body once, not once per layer; the report then also gives the analytic
figure counted that way, the one XLA's should be compared with.
The returned executable is what the loop calls.
"""

from __future__ import annotations

import time
from typing import Any

import jax

from mmjax import flops as flops_lib

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


def _cost(compiled: Any, key: str) -> float | None:
    """``compiled.cost_analysis()[key]`` for one call (per device), or ``None``."""
    try:
        cost = compiled.cost_analysis()
    except (NotImplementedError, RuntimeError):
        return None
    if isinstance(cost, list | tuple):
        cost = cost[0] if cost else None
    return float(cost[key]) if cost and key in cost else None


def xla_flops(compiled: Any) -> float | None:
    """FLOPs XLA counts for one call (per device program), or ``None``."""
    return _cost(compiled, "flops")


def analytic_flops(config: Any, batch_size: int) -> int | None:
    """``flops.train_flops`` of ``config``'s task (the real count: every layer), or ``None``
    where a kind has no formula."""
    try:
        return flops_lib.train_flops(config, batch_size)
    except (AttributeError, KeyError, TypeError):
        return None


def analytic_flops_as_xla_counts(config: Any, batch_size: int) -> int | None:
    """The analytic train FLOPs counted as XLA's ``cost_analysis`` counts them: with
    ``model.scan_layers`` one layer per scanned stack (XLA does not multiply a while body
    by its trip count, so its figure is far below the real one); else ``analytic_flops``."""
    if not config.model.get("scan_layers", False):
        return analytic_flops(config, batch_size)
    try:
        once = flops_lib.Count(loop_once=True)
        return flops_lib.TRAIN_FACTOR * flops_lib.forward_flops(config, batch_size, once)
    except (AttributeError, KeyError, TypeError):
        return None


def report(compiled: Any, seconds: float, config: Any = None, batch_size: int = 0) -> list[str]:
    """The printed lines: compile time, memory per device, FLOPs per step."""
    lines = [f"train step compiled in {seconds:.1f}s; memory per device (XLA):"]
    mem = memory_bytes(compiled)
    if not mem:
        lines.append("  (not reported by this backend)")
    for name, n in mem.items():
        lines.append(f"  {name:<18} {human_bytes(n):>12}")
    flops = xla_flops(compiled)
    analytic = analytic_flops(config, batch_size) if config is not None else None
    if analytic is not None:
        lines.append(f"FLOPs per step: analytic {analytic / 1e9:.3f} GFLOP (global batch)")
        as_xla = analytic_flops_as_xla_counts(config, batch_size)
        if as_xla != analytic and as_xla is not None:
            lines.append(
                f"  scan_layers: XLA counts each scanned stack once: {as_xla / 1e9:.3f} GFLOP"
            )
    if flops is not None:
        lines.append(f"FLOPs per step: XLA cost_analysis {flops / 1e9:.3f} GFLOP (per device)")
    return lines


def aot_compile(
    jitted: Any, *args: Any, config: Any = None, batch_size: int = 0, verbose: bool = True
) -> Any:
    """``jitted.lower(*args).compile()``; prints ``report`` (FLOPs of ``config``'s task on
    ``batch_size`` examples) on process 0 when ``verbose``."""
    t0 = time.perf_counter()
    compiled = jitted.lower(*args).compile()
    if verbose and jax.process_index() == 0:
        print("\n".join(report(compiled, time.perf_counter() - t0, config, batch_size)))
    return compiled


def memory_total(mem: dict[str, int]) -> int:
    """Bytes one device holds while the step runs: arguments, outputs, temporaries and code,
    less the outputs that reuse donated argument buffers."""
    keep = ("arguments", "outputs", "temporaries", "generated code")
    return sum(mem.get(k, 0) for k in keep) - mem.get("aliased (donated)", 0)


def hbm_bytes_accessed(compiled: Any) -> float | None:
    """XLA's ``bytes accessed`` for one call (per device), or ``None``."""
    return _cost(compiled, "bytes accessed")


def roofline(flops: float, hbm_bytes: float, collective_bytes: float, chip: Any) -> dict:
    """Lower bounds on the step time (seconds) from the chip's datasheet: FLOPs at peak,
    HBM traffic at full bandwidth, collective bytes at full ICI bandwidth; the step cannot
    be faster than the largest (it is slower wherever they do not overlap)."""
    bounds = {
        "compute_s": flops / chip.peak_flops,
        "hbm_s": hbm_bytes / chip.hbm_bandwidth,
        "ici_s": collective_bytes / chip.ici_bandwidth,
    }
    bounds["bound_s"] = max(bounds.values())
    bounds["bound_by"] = max(("compute_s", "hbm_s", "ici_s"), key=bounds.get).removesuffix("_s")
    return bounds


def _si(x: float, unit: str) -> str:
    """``3.2e12, 'FLOP' -> '3.20 TFLOP'``; seconds as ``'12.3 ms'``."""
    if unit == "s":
        for scale, prefix in ((1, ""), (1e-3, "m"), (1e-6, "µ")):
            if abs(x) >= scale or prefix == "µ":
                return f"{x / scale:.3g} {prefix}s"
    for scale, prefix in ((1e15, "P"), (1e12, "T"), (1e9, "G"), (1e6, "M"), (1, "")):
        if abs(x) >= scale or scale == 1:
            return f"{x / scale:.3g} {prefix}{unit}"
    return f"{x} {unit}"


def topology_lines(r: dict) -> list[str]:
    """The printed ``mmjax compile`` report from ``aot.compile_for_topology``'s dict."""
    chip, mem = r["chip"], r["memory_per_chip"]
    lines = [
        f"{r['config']} on {r['topology']} ({r['jax_topology']}, {r['num_chips']} chips "
        f"{chip['name']}), mesh {r['mesh']}, global batch {r['global_batch']}",
        f"compiled in {r['compile_seconds']:.1f}s (load {r['load_1min']:.2f}); "
        "memory per chip (XLA):",
    ]
    lines += [f"  {name:<18} {human_bytes(n):>12}" for name, n in mem.items()]
    hbm, total = chip["hbm_bytes"], r["memory_total"]
    verdict = "fits" if r["fits"] else "DOES NOT FIT"
    lines.append(
        f"  {'total':<18} {human_bytes(total):>12} of {human_bytes(hbm)} HBM: {verdict} "
        f"(headroom {human_bytes(hbm - total)}, {100 * (hbm - total) / hbm:.0f}%)"
    )
    xla, analytic = r["xla_flops_per_chip"], r["analytic_flops"]
    as_xla = r.get("analytic_flops_as_xla_counts") or analytic
    line = (
        f"FLOPs per step: XLA {_si(xla, 'FLOP')} per chip, {_si(xla * r['num_chips'], 'FLOP')} all"
    )
    if analytic:
        ratio = xla * r["num_chips"] / as_xla
        line += f"; analytic {_si(analytic, 'FLOP')}"
        if as_xla != analytic:  # scan_layers: XLA counts a scanned stack's body once
            line += f", {_si(as_xla, 'FLOP')} counting each scanned stack once as XLA does"
        line += f" (XLA/analytic {ratio:.2f})"
    lines.append(line)
    lines.append("collectives per step (from the compiled HLO, per chip):")
    for kind, c in r["collectives"].items():
        if c["count"]:
            lines.append(f"  {kind:<18} {c['count']:>6.0f} ops {human_bytes(c['bytes']):>12}")
    b = r["roofline"]
    lines.append(
        f"roofline bound (datasheet peaks; a lower bound, not a measurement): step >= "
        f"{_si(b['bound_s'], 's')} ({b['bound_by']}-bound; compute {_si(b['compute_s'], 's')}, "
        f"HBM {_si(b['hbm_s'], 's')}, ICI {_si(b['ici_s'], 's')})"
    )
    return lines
