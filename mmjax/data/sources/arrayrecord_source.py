"""ArrayRecord files written by ``mmjax data prepare``: ``source='arrayrecord:DIR/*.array_record'``.

Each record is a msgpack map (never pickle) of a source record (records.py) with the
image, video or audio kept encoded (the original JPEG / PNG, MP4 ..., WAV ... bytes),
decoded when read by the task's example as the source's own were (``mmjax.data.media``
for video and audio). ``DIR/manifest.json`` says whether
the prepare finished; reading an unfinished one is an error.
"""

from __future__ import annotations

import glob
import json
from pathlib import Path
from typing import Any

import msgpack

from mmjax.data.sources.records import DEFAULT_CAPTION_TEMPLATE, SourceError, finalize

FORMAT = "mmjax-msgpack-v1"
MANIFEST = "manifest.json"
SUFFIX = ".array_record"
# Only what a record may hold goes into the file (source bookkeeping such as wds
# positions stays out).
STORED_KEYS = (
    "key",
    "image",
    "video",
    "audio",
    "caption",
    "captions",
    "label",
    "label_name",
    "question",
    "answer",
    "answers",
)


def pack_record(record: dict[str, Any]) -> bytes:
    """A source record (encoded image / video / audio bytes, texts, ints) as msgpack bytes."""
    return msgpack.packb({k: record[k] for k in STORED_KEYS if k in record}, use_bin_type=True)


def unpack_record(data: bytes) -> dict[str, Any]:
    return msgpack.unpackb(data, raw=False)


def arrayrecord_paths(spec: str) -> list[str]:
    """The files of ``DIR`` or ``DIR/*.array_record``, sorted; the prepare must be complete."""
    if "://" in spec:  # ArrayRecord's reader (riegeli file descriptors) opens local files only
        raise SourceError(
            f"config.data.source arrayrecord:{spec}: ArrayRecord files are read from local "
            "disk only; copy them to each host (gsutil -m cp -r) or train from wds: shards, "
            "which stream from gs://"
        )
    pattern = str(Path(spec) / f"*{SUFFIX}") if Path(spec).is_dir() else spec
    paths = sorted(glob.glob(pattern))
    if not paths:
        raise SourceError(f"config.data.source arrayrecord:{spec}: no files match {pattern!r}")
    for directory in {Path(p).parent for p in paths}:
        manifest = directory / MANIFEST
        if manifest.is_file() and not json.loads(manifest.read_text()).get("complete"):
            raise SourceError(
                f"config.data.source arrayrecord:{spec}: {directory} is an unfinished "
                "`mmjax data prepare`; run it again to complete it"
            )
    return paths


class ArrayRecordSource:
    """Random access to prepared records: ``len``, ``source[i] -> record``. Picklable."""

    def __init__(self, spec: str, template: str = DEFAULT_CAPTION_TEMPLATE):
        import grain

        self.spec, self.template = spec, template
        self.source = grain.sources.ArrayRecordDataSource(arrayrecord_paths(spec))

    def __len__(self) -> int:
        return len(self.source)

    def __repr__(self) -> str:
        return f"ArrayRecordSource({self.spec!r})"

    def raw(self, index: int) -> dict[str, Any]:
        return unpack_record(self.source[int(index)])

    def __getitem__(self, index: int) -> dict[str, Any]:
        return finalize(self.raw(index), self.template)
