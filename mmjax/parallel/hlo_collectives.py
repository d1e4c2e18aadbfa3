"""Collectives in a compiled (per-device, SPMD) HLO module: how many run per step, and bytes.

``collectives(compiled.as_text())`` -> ``{kind: {'count': n, 'bytes': b}}`` for
all-gather, reduce-scatter, all-reduce, all-to-all and collective-permute. An op inside a
``while`` body (a scanned layer stack, gradient accumulation) counts once per iteration:
the trip count is XLA's ``known_trip_count``, or the bound in the loop condition.
Bytes are the op's result size on one device (for an async ``-start`` op, its largest
buffer): roughly what each chip receives, not link traffic. TPU compilers fuse a
reduce-scatter as an all-reduce inside an ``all-reduce-scatter`` fusion; it counts as a
reduce-scatter of the all-reduce's size. It is an estimate from the program text, for
comparing configs, not a profile.
"""

from __future__ import annotations

import re
from collections import defaultdict

KINDS = ("all-gather", "reduce-scatter", "all-reduce", "all-to-all", "collective-permute")
DTYPE_BYTES = {
    "pred": 1, "s8": 1, "u8": 1, "f8e4m3fn": 1, "f8e5m2": 1, "f8e4m3": 1, "f8e5m2fnuz": 1,
    "f8e4m3fnuz": 1, "s4": 0.5, "u4": 0.5, "bf16": 2, "f16": 2, "s16": 2, "u16": 2,
    "f32": 4, "s32": 4, "u32": 4, "f64": 8, "s64": 8, "u64": 8, "c64": 8, "c128": 16,
}  # fmt: skip
_COMPUTATION = re.compile(r"^(?:ENTRY )?%?([\w.\-]+) \(.*\{\s*$")
_INSTRUCTION = re.compile(r"^\s*(?:ROOT )?%?[\w.\-]+ = (.*?) ([a-z][\w\-]*)\((.*)$")
_ARRAY = re.compile(r"\b([a-z]\w*)\[([\d,]*)\]")
_CALLEE = re.compile(r"\b(calls|to_apply|body|condition|branch_computations)=\{?([^}]*?)\}?(?:,|$)")


def _array_bytes(shape_text: str) -> list[float]:
    out = []
    for dtype, dims in _ARRAY.findall(shape_text):
        if dtype in DTYPE_BYTES:
            n = 1
            for d in dims.split(",") if dims else ():
                n *= int(d)
            out.append(n * DTYPE_BYTES[dtype])
    return out


def _parse(hlo: str) -> tuple[dict, dict, str]:
    """``(instructions per computation, call edges, entry computation)``."""
    comps: dict[str, list[tuple[str, str, str]]] = {}
    edges: dict[str, list[tuple[str, str]]] = defaultdict(list)  # caller -> (kind, callee)
    entry, current = "", None
    for line in hlo.splitlines():
        m = _COMPUTATION.match(line)
        if m:
            current = m.group(1)
            comps[current] = []
            if line.startswith("ENTRY"):
                entry = current
            continue
        if current is None or line.startswith("}"):
            continue
        m = _INSTRUCTION.match(line)
        if not m:
            continue
        result, opcode, rest = m.groups()
        comps[current].append((opcode, result, rest))
        for kind, names in _CALLEE.findall(rest):
            for name in names.split(","):
                edges[current].append((kind, name.strip().lstrip("%")))
    return comps, edges, entry


def _trip_counts(comps: dict) -> dict[str, int]:
    """``{while body: iterations}``: XLA's ``known_trip_count`` where the backend keeps it
    (CPU), else the loop bound, the largest integer constant of the condition (``i < N``,
    as libtpu leaves it); 1 if neither is there."""
    trips = {}
    for instrs in comps.values():
        for opcode, _, rest in instrs:
            if opcode != "while":
                continue
            body = re.search(r"body=%?([\w.\-]+)", rest)
            cond = re.search(r"condition=%?([\w.\-]+)", rest)
            known = re.search(r'"known_trip_count":\{"n":"(\d+)"', rest)
            if known:
                n = int(known.group(1))
            else:
                bounds = [
                    int(c.group(1))
                    for op, result, r in comps.get(cond.group(1) if cond else "", ())
                    if op == "constant" and re.match(r"[su](?:32|64)\[\]", result)
                    for c in [re.match(r"(\d+)\)", r)]
                    if c
                ]
                n = max(bounds, default=1)
            if body:
                trips[body.group(1)] = n
    return trips


def collectives(hlo: str) -> dict[str, dict[str, float]]:
    """``{kind: {'count', 'bytes'}}`` per step on one device, loop trip counts applied."""
    comps, edges, entry = _parse(hlo)
    trips = _trip_counts(comps)
    times: dict[str, float] = defaultdict(float)
    times[entry or next(iter(comps), "")] = 1.0
    order, seen = [], set()

    def visit(name: str) -> None:  # callers before callees (the call graph is a DAG)
        if name in seen:
            return
        seen.add(name)
        for _, callee in edges.get(name, ()):
            visit(callee)
        order.append(name)

    for name in comps:
        visit(name)
    for name in reversed(order):
        for kind, callee in edges.get(name, ()):
            factor = trips.get(callee, 1) if kind == "body" else 1
            times[callee] += times[name] * factor
    out = {k: {"count": 0.0, "bytes": 0.0} for k in KINDS}
    for name, instrs in comps.items():
        # A TPU async collective is a chain of fusions (start, overlapped compute, done), each
        # repeating the op with the same chain_id: count it in the start fusion only.
        starts = any('custom_call_target="AsyncCollectiveStart"' in r for _, _, r in instrs)
        for opcode, result, rest in instrs:
            base = opcode.removesuffix("-start")
            if base not in KINDS or opcode.endswith("-done"):
                continue
            if "chain_id=" in rest and not starts:
                continue
            kind = "reduce-scatter" if name.startswith("all-reduce-scatter") else base
            sizes = _array_bytes(result)
            out[kind]["count"] += times[name]
            out[kind]["bytes"] += times[name] * (max(sizes) if sizes else 0)
    return out
