"""Tasks: one file each (model + loss + metrics + eval) implementing ``mmjax.tasks.base.Task``,
registered by name with ``@register_task('name')`` and built by ``build_task(config)``.

Importing this package registers the shipped tasks; a new task module is imported here.
"""

from __future__ import annotations

from mmjax.tasks import caption, classify, contrastive, itm_mlm, text_to_image, vqvae  # noqa: F401
from mmjax.tasks.base import TASKS, BatchLossTask, Task, build_task, register_task

__all__ = ["TASKS", "BatchLossTask", "Task", "build_task", "register_task"]
