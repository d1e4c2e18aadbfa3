"""Per-op time of a ``jax.profiler`` trace, summed over the XLA CPU/GPU worker threads.

    python benchmarks/vs_peers.py --configs small --impls mmjax --profile /tmp/prof
    python benchmarks/profile_ops.py /tmp/prof/small-fp32-full-xla --steps 3

Reads the newest ``*.xplane.pb`` under the directory with ``jax.profiler.ProfileData``
(no TensorBoard needed) and prints time per step by op kind (the fusion name without its
number: ``ynn_fusion`` are the matmuls on CPU, ``copy_*`` / ``transpose_*`` layout
changes, ``wrapped_broadcast`` fills) and the slowest single ops. Look an op up in the
optimized HLO (``jax.jit(f).lower(...).compile().as_text()``) to see its shape and the
model line in its ``metadata``.
"""

from __future__ import annotations

import argparse
import collections
import re
from pathlib import Path

from jax.profiler import ProfileData

SKIP = ("ThunkExecutor", "SlinkyThreadPool", "end: ")
DEVICE_LINES = ("Eigen", "XLA Ops", "Stream")


def op_times(trace: Path) -> collections.Counter:
    """Total ns per op name over the device / XLA worker-thread lines of the trace."""
    data = ProfileData.from_file(str(trace))
    totals: collections.Counter = collections.Counter()
    for plane in data.planes:
        for line in plane.lines:
            if not any(tag in line.name for tag in DEVICE_LINES):
                continue
            for event in line.events:
                if not event.name.startswith(SKIP):
                    totals[event.name] += event.duration_ns
    return totals


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("trace_dir", type=Path)
    parser.add_argument("--steps", type=int, default=3, help="steps in the trace")
    parser.add_argument("--top", type=int, default=15)
    args = parser.parse_args()
    traces = sorted(args.trace_dir.glob("**/*.xplane.pb"), key=lambda p: p.stat().st_mtime)
    if not traces:
        raise SystemExit(f"no *.xplane.pb under {args.trace_dir}")
    per_op = op_times(traces[-1])
    kinds: collections.Counter = collections.Counter()
    for name, ns in per_op.items():
        kinds[re.sub(r"[.\d]+$", "", name)] += ns
    total = sum(kinds.values())
    print(f"{traces[-1]}: {total / 1e6 / args.steps:.0f} ms of op time per step (all threads)")
    for title, counter in (("by kind", kinds), ("slowest ops", per_op)):
        print(f"\n{title}:")
        for name, ns in counter.most_common(args.top):
            print(f"{ns / 1e6 / args.steps:9.1f} ms/step {ns / total:6.1%}  {name}")


if __name__ == "__main__":
    main()
