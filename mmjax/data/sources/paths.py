"""File names that a data set names (captions files, HF shard indexes) must stay inside
their root: a hostile ``captions.jsonl`` row ``{"image": "/etc/passwd"}`` or
``"../../secret.png"`` would otherwise be read, and ``mmjax data prepare`` would copy
the file into the prepared data set. ``config.data.allow_outside_root=True`` (prepare:
``--allow-outside-root``) allows it for data sets that point at images elsewhere.
"""

from __future__ import annotations

import os

from mmjax.data.sources.records import SourceError


def inside_root(root: str | os.PathLike, name: str, where: str, allow_outside: bool = False) -> str:
    """``root/name`` as a path string; ``SourceError`` naming ``where`` (file:line) when
    it is not inside ``root`` (an absolute path elsewhere, or ``..`` climbing out).

    The check is on the names (``os.path.normpath``), not on resolved links: a data set
    whose root holds symlinks to image directories elsewhere is still accepted.
    """
    path = os.path.join(os.fspath(root), name)  # an absolute name stays as it is
    if allow_outside:
        return path
    rel = os.path.relpath(os.path.normpath(os.path.abspath(path)), os.path.abspath(root))
    if rel == ".." or rel.startswith(".." + os.sep):
        raise SourceError(
            f"{where}: path {name!r} is outside the data root {os.fspath(root)}; set "
            "config.data.allow_outside_root=True (data prepare: --allow-outside-root) if "
            "that is intended"
        )
    return path
