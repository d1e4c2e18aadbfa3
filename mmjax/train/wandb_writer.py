"""Weights & Biases metric writer (``config.train.writers = [..., 'wandb']``).

The W&B run id is kept in ``WORKDIR/wandb_run_id``: a restarted (resumed) training run
logs into the same W&B run (``resume='allow'``), so its curves continue instead of
starting a second run. ``WANDB_MODE=offline`` writes under ``WORKDIR/wandb`` with no
network (``wandb sync`` uploads later); ``WANDB_PROJECT`` / ``config.train.wandb_project``
name the project. Needs the ``[wandb]`` extra.
"""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

RUN_ID_FILE = "wandb_run_id"


def run_id(workdir: Path) -> str:
    """The run's W&B id: the one saved in the workdir, else a new one (saved)."""
    path = workdir / RUN_ID_FILE
    if path.is_file() and path.read_text().strip():
        return path.read_text().strip()
    new = uuid.uuid4().hex[:12]  # W&B ids: lowercase letters and digits
    path.write_text(new + "\n")
    return new


class WandbWriter:
    def __init__(self, workdir: str | Path, config: dict[str, Any], project: str = ""):
        try:
            import wandb
        except ImportError as e:
            raise ImportError(
                "config.train.writers has 'wandb' but wandb is not installed: "
                "pip install 'mmjax[wandb]'"
            ) from e
        workdir = Path(workdir)
        workdir.mkdir(parents=True, exist_ok=True)
        self.run_id = run_id(workdir)
        self.run = wandb.init(
            project=project or None,
            id=self.run_id,
            resume="allow",
            dir=str(workdir),
            name=workdir.name,
            config=config,
        )

    def write(self, step: int, metrics: dict[str, float]) -> None:
        self.run.log(metrics, step=step)

    def close(self) -> None:
        self.run.finish()
