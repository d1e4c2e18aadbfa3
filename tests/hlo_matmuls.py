"""Matmul and convolution FLOPs read from a lowered program's StableHLO text: the outside
reference for ``mmjax.flops`` (XLA's ``cost_analysis`` also counts elementwise ops).

Each ``stablehlo.dot_general`` is ``2 * prod(result) * prod(contracted lhs dims)``, each
``stablehlo.convolution`` ``2 * prod(result) * prod(kernel) / out_features``; a private
function counts once per ``call`` of it; a ``while`` body (``nn.scan``) counts once, as
XLA's HloCostAnalysis does.
"""

from __future__ import annotations

import math
import re

_FUNC = re.compile(r"^\s*func\.func (?:public|private) @([\w.$-]+)\(")
_CALL = re.compile(r"\bcall @([\w.$-]+)\(")
_TYPES = re.compile(r":\s*\((tensor<[^>]*>), (tensor<[^>]*>)\)\s*->\s*(tensor<[^>]*>)")
_CONTRACT = re.compile(r"contracting_dims = \[([\d, ]*)\] x")
_KERNEL_LABELS = re.compile(r"dim_numbers = \[[^\]]*\]x\[([^\]]*)\]")


def _dims(tensor: str) -> list[int]:
    """``'tensor<4x12x32xf32>'`` -> ``[4, 12, 32]``."""
    return [int(d) for d in tensor[len("tensor<") : -1].split("x")[:-1]]


def _op_flops(line: str) -> int:
    types = _TYPES.search(line)
    if types is None:
        raise ValueError(f"no operand types in: {line[:200]}")
    lhs, rhs, out = (_dims(t) for t in types.groups())
    if "stablehlo.dot_general" in line:
        contracted = [int(d) for d in _CONTRACT.search(line).group(1).split(",") if d.strip()]
        return 2 * math.prod(out) * math.prod(lhs[d] for d in contracted)
    labels = [x.strip() for x in _KERNEL_LABELS.search(line).group(1).split(",")]
    return 2 * math.prod(out) * math.prod(rhs) // rhs[labels.index("o")]


def matmul_flops(stablehlo: str) -> int:
    """Dot and convolution FLOPs of ``jax.jit(f).lower(...).as_text()``."""
    own: dict[str, int] = {"": 0}
    calls: dict[str, list[str]] = {"": []}
    current = ""
    for line in stablehlo.splitlines():
        m = _FUNC.match(line)
        if m:
            current = m.group(1)
            own[current], calls[current] = 0, []
            continue
        if "stablehlo.dot_general" in line or "stablehlo.convolution" in line:
            own[current] += _op_flops(line)
        calls[current] += _CALL.findall(line)

    def total(name: str) -> int:
        return own[name] + sum(total(callee) for callee in calls[name])

    return total("main")
