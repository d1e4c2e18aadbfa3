"""A JSONL or CSV file of image paths and captions: ``config.data.source='files:PATH'``.

One row per image. Columns / keys:

    image       image file path, relative to the captions file's directory (or absolute);
                it must lie inside that directory unless data.allow_outside_root=True
    video, audio  a video / audio file path (instead of or besides ``image``), decoded by
                the example (``mmjax.data.media``: imageio + PyAV, soundfile); same root rule
    caption     one caption, or
    captions    several (a JSON list; in a CSV cell, the list as JSON text)
    label       optional class: an int, or a class name (names are indexed in sorted order)
    question, answer, answers (a JSON list)      optional, for VQA-style data

A row that is not valid JSON or has no ``image`` is an error naming the file and line;
a missing or unreadable image file is a bad record (``data.bad_records``) named by path.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

from mmjax import storage
from mmjax.data.sources.paths import inside_root
from mmjax.data.sources.records import (
    DEFAULT_CAPTION_TEMPLATE,
    SourceError,
    class_index,
    finalize,
)
from mmjax.data.transforms import BadRecord
from mmjax.jsonl import read_json_lines

OPTIONAL_TEXT = ("question", "answer")
MEDIA_PATHS = ("video", "audio")


def read_input_file(path: Path, where: str, what: str = "image") -> bytes:
    """The encoded bytes of an image / video / audio file (``what``); ``BadRecord`` naming
    it when it cannot be read."""
    try:
        return path.read_bytes()
    except OSError as e:
        raise BadRecord(f"missing {what} file {path} ({where}: {type(e).__name__})") from None


def _rows(path: Path) -> list[tuple[int, dict[str, Any]]]:
    """``(line number, row)`` for every row of a ``.jsonl`` / ``.csv`` file."""
    if not path.is_file():
        raise SourceError(f"config.data.source files:{path}: no such file")
    if path.suffix.lower() == ".csv":
        try:
            with path.open(newline="", encoding="utf-8") as f:
                return [(n + 2, dict(row)) for n, row in enumerate(csv.DictReader(f))]
        except UnicodeDecodeError as e:
            raise SourceError(f"{path}: not UTF-8 text ({e})") from None
    if path.suffix.lower() not in (".jsonl", ".json"):
        raise SourceError(f"config.data.source files:{path}: expected a .jsonl or .csv file")
    return list(read_json_lines(path, SourceError))


def _list(value: Any, where: str, key: str) -> list[str]:
    """A list column: a JSON list, or (CSV) its JSON text."""
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError:
            raise SourceError(f"{where}: {key!r} must be a JSON list of strings") from None
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise SourceError(f"{where}: {key!r} must be a list of strings")
    return value


def _is_int_label(value: Any) -> bool:
    if isinstance(value, bool):
        return False
    return isinstance(value, int) or str(value).strip().lstrip("-").isdigit()


class FilesSource:
    """Random access to the rows of a captions file: ``len``, ``source[i] -> record``."""

    def __init__(
        self,
        path: str | Path,
        template: str = DEFAULT_CAPTION_TEMPLATE,
        allow_outside_root: bool = False,
    ):
        self.path = storage.user_path(path)  # gs://... too
        self.template = template
        root = self.path.parent
        self.rows: list[dict[str, Any]] = []
        labels = []
        for line, row in _rows(self.path):
            where = f"{self.path}:{line}"
            out: dict[str, Any] = {"key": where}
            for media in MEDIA_PATHS:  # video / audio files: decoded by data/media.py
                if isinstance(row.get(media), str) and row[media]:
                    out[media] = inside_root(root, row[media], where, allow_outside_root)
            image = row.get("image")
            if isinstance(image, str) and image:
                out["image"] = inside_root(root, image, where, allow_outside_root)
            elif not any(m in out for m in MEDIA_PATHS):
                raise SourceError(f"{where}: no 'image' path (keys: {sorted(row)})")
            if row.get("captions") not in (None, ""):
                out["captions"] = _list(row["captions"], where, "captions")
            elif row.get("caption") is not None:
                out["caption"] = str(row["caption"])
            if row.get("answers") not in (None, ""):
                out["answers"] = _list(row["answers"], where, "answers")
            out.update({k: str(row[k]) for k in OPTIONAL_TEXT if row.get(k) not in (None, "")})
            if row.get("label") not in (None, ""):
                out["label"] = row["label"]
                labels.append((where, row["label"]))
            self.rows.append(out)
        self._index_labels(labels)

    def _index_labels(self, labels: list[tuple[str, Any]]) -> None:
        """Int labels (or digit strings, as a CSV has them) stay; class names are indexed.
        A mix of both is an error naming the first odd row (one malformed label must not
        turn every int label into a class name and remap them all)."""
        is_int = [_is_int_label(x) for _, x in labels]
        if any(is_int) and not all(is_int):
            ints = sum(is_int)
            odd = is_int.index(ints < len(is_int) / 2)
            where, value = labels[odd]
            raise SourceError(
                f"{where}: label {value!r} mixes with the file's other labels "
                f"({ints} of {len(labels)} are integers); use integer labels or class "
                "names throughout"
            )
        if all(is_int):
            for row in self.rows:
                if "label" in row:
                    row["label"] = int(row["label"])
            self.class_names = None
            return
        labels = [x for _, x in labels]
        index = class_index([str(x) for x in labels])
        self.class_names = list(index)
        for row in self.rows:
            if "label" in row:
                row["label_name"] = str(row["label"])
                row["label"] = index[row["label_name"]]

    def __len__(self) -> int:
        return len(self.rows)

    def __repr__(self) -> str:
        return f"FilesSource({str(self.path)!r})"

    def num_captions(self, index: int) -> int:
        row = self.rows[index]
        return len(row["captions"]) if "captions" in row else 1

    def raw(self, index: int, read_media: bool = False) -> dict[str, Any]:
        """Row ``index`` with its image file's encoded bytes; with ``read_media`` its video /
        audio files' bytes too (``mmjax data prepare``: prepared records carry no paths)."""
        row = dict(self.rows[int(index)])
        # training leaves a video / audio path as it is: the decoder reads the file itself
        for field in ("image", *MEDIA_PATHS) if read_media else ("image",):
            if field in row:
                row[field] = read_input_file(storage.user_path(row[field]), row["key"], field)
        return row

    def __getitem__(self, index: int) -> dict[str, Any]:
        return finalize(self.raw(index), self.template)
