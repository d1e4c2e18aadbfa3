"""Framework-neutral timing of a training step and the JSON line a worker reports.

Imported by the ``vs_peers`` workers in both environments (the JAX one and the
PyTorch one), so it depends on the standard library only.
"""

from __future__ import annotations

import json
import statistics
import time
from collections.abc import Callable

RESULT_PREFIX = "RESULT "


def median_step_seconds(
    step: Callable[[], object], sync: Callable[[object], None], warmup: int, steps: int
) -> float:
    """Median wall time of ``step()`` over ``steps`` calls after ``warmup`` calls.

    ``sync(out)`` waits until the device has finished the step that produced ``out``
    (``jax.block_until_ready``, ``torch.cuda.synchronize``), so every sample is a
    whole device-synchronized step.
    """
    for _ in range(warmup):
        sync(step())
    times = []
    for _ in range(steps):
        t0 = time.perf_counter()
        sync(step())
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def report(result: dict) -> None:
    """Prints ``result`` as the one line the orchestrator parses."""
    print(RESULT_PREFIX + json.dumps(result), flush=True)


def parse_report(stdout: str) -> dict | None:
    """The last ``RESULT`` line of a worker's stdout, or ``None``."""
    lines = [ln for ln in stdout.splitlines() if ln.startswith(RESULT_PREFIX)]
    return json.loads(lines[-1][len(RESULT_PREFIX) :]) if lines else None
