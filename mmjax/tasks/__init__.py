"""Tasks: one file each, with the model builder, loss, metrics and eval."""

from __future__ import annotations

from typing import Any

from mmjax.tasks.caption import CaptionTask
from mmjax.tasks.classify import ClassifyTask
from mmjax.tasks.contrastive import ContrastiveTask
from mmjax.tasks.itm_mlm import ITMMLMTask

TASKS = {
    "caption": CaptionTask,
    "classify": ClassifyTask,
    "contrastive": ContrastiveTask,
    "itm_mlm": ITMMLMTask,
}


def build_task(config: Any) -> Any:
    """The task named by ``config.task.name``."""
    try:
        cls = TASKS[config.task.name]
    except KeyError:
        raise ValueError(
            f"config.task.name: unknown {config.task.name!r}; known: {sorted(TASKS)}"
        ) from None
    return cls(config)
