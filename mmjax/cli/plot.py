"""``mmjax plot --workdir RUN [--out DIR]``: loss, learning-rate and eval curves as PNG.

Reads ``RUN/metrics.jsonl`` and draws one figure, ``curves.png`` (in ``--out``, default
``RUN/plots``), with three panels: the training loss, the learning rate and every
``eval/...`` metric against the step. matplotlib (the ``[plot]`` extra) is imported only
here, with the non-interactive Agg backend.
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path
from typing import Any

from mmjax.jsonl import read_json_lines

FIGURE = "curves.png"


def add_parser(sub: Any) -> None:
    p = sub.add_parser("plot", help="draw a run's loss / lr / eval curves to PNG (matplotlib)")
    p.add_argument("--workdir", required=True, help="run directory with metrics.jsonl")
    p.add_argument("--out", help="output directory (default: WORKDIR/plots)")


def read_series(path: Path) -> dict[str, tuple[list[int], list[float]]]:
    """``{metric: (steps, values)}`` from a ``metrics.jsonl`` (non-finite values dropped)."""
    if not path.is_file():
        raise FileNotFoundError(f"no metrics file at {path}")
    series: dict[str, tuple[list[int], list[float]]] = {}
    for _, row in read_json_lines(path):
        step = row.get("step")
        for key, value in row.items():
            if key == "step" or not isinstance(value, (int, float)) or not math.isfinite(value):
                continue
            steps, values = series.setdefault(key, ([], []))
            steps.append(int(step))
            values.append(float(value))
    return series


def plot_run(workdir: str | Path, out: str | Path | None = None) -> Path:
    """Writes ``curves.png`` for the run at ``workdir``; returns its path."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    workdir = Path(workdir)
    series = read_series(workdir / "metrics.jsonl")
    out_dir = Path(out) if out else workdir / "plots"
    out_dir.mkdir(parents=True, exist_ok=True)
    evals = sorted(k for k in series if k.startswith("eval/"))
    fig, axes = plt.subplots(1, 3, figsize=(15, 4), sharex=True, constrained_layout=True)
    for ax, keys, title in (
        (axes[0], [k for k in ("loss",) if k in series], "training loss"),
        (axes[1], [k for k in ("lr",) if k in series], "learning rate"),
        (axes[2], evals, "eval"),
    ):
        for key in keys:
            steps, values = series[key]
            ax.plot(steps, values, marker="o" if len(steps) < 30 else None, label=key)
        ax.set_title(title)
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
        if len(keys) > 1:
            ax.legend(fontsize=8)
        if not keys:
            ax.text(0.5, 0.5, "not logged", ha="center", va="center", transform=ax.transAxes)
    fig.suptitle(str(workdir.name))
    path = out_dir / FIGURE
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def main(args: argparse.Namespace, overrides: list[str]) -> int:
    from mmjax.config import ConfigError

    if overrides:
        raise ConfigError("plot takes no --config.KEY overrides")
    print(f"wrote {plot_run(args.workdir, args.out)}")
    return 0
