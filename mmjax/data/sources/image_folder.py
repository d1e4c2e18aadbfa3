"""An image-folder classification layout: ``config.data.source='folder:ROOT'``.

    ROOT/<class name>/<image>.jpg|png|...

Classes are the subdirectories in sorted order (label = index, as torchvision's
``ImageFolder``); images are sorted within a class. The caption is
``config.data.caption_template`` filled with the class name (underscores read as
spaces), so contrastive training and zero-shot eval work on classification data.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mmjax.data.sources.files_source import read_input_file
from mmjax.data.sources.records import DEFAULT_CAPTION_TEMPLATE, SourceError, finalize

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff")


class ImageFolderSource:
    """Random access to ``ROOT/<class>/<image>``: ``len``, ``source[i] -> record``."""

    def __init__(self, root: str | Path, template: str = DEFAULT_CAPTION_TEMPLATE):
        self.root = Path(root)
        self.template = template
        if not self.root.is_dir():
            raise SourceError(f"config.data.source folder:{self.root}: no such directory")
        self.class_names = sorted(p.name for p in self.root.iterdir() if p.is_dir())
        self.files: list[tuple[str, int]] = []
        for label, name in enumerate(self.class_names):
            images = sorted(
                p for p in (self.root / name).rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES
            )
            self.files.extend((str(p.relative_to(self.root)), label) for p in images)
        if not self.files:
            raise SourceError(
                f"config.data.source folder:{self.root}: no images in class subdirectories "
                f"(expected ROOT/<class>/<image>{{{','.join(IMAGE_SUFFIXES)}}})"
            )

    def __len__(self) -> int:
        return len(self.files)

    def __repr__(self) -> str:
        return f"ImageFolderSource({str(self.root)!r})"

    def num_captions(self, index: int) -> int:
        return 1

    def raw(self, index: int) -> dict[str, Any]:
        rel, label = self.files[int(index)]
        path = self.root / rel
        return {
            "key": str(path),
            "image": read_input_file(path, f"folder {self.root}"),
            "label": label,
            "label_name": self.class_names[label],
        }

    def __getitem__(self, index: int) -> dict[str, Any]:
        return finalize(self.raw(index), self.template)
