"""``mmjax data prepare``: local files, image folders or tar shards -> ArrayRecord files.

    mmjax data prepare --source files:/data/captions.jsonl --out /data/prepared
    mmjax train ... --config.data.source=arrayrecord:/data/prepared

Records keep their images, videos and audio encoded (the original JPEG / PNG, MP4 /
WebM ..., WAV / FLAC ... bytes; decoded when read, by the same example as the source's)
and are written as msgpack (``arrayrecord_source.pack_record``) to
``OUT/part-NNNNN.array_record``, one file per ``shard_size`` input records, for random
access in training. Inputs whose image, video or audio is missing or does not decode are
left out and listed in the manifest.

Interrupting is safe: a shard is written under a temporary name and renamed when
complete, and ``OUT/manifest.json`` (rewritten atomically after every shard) lists the
complete ones. A re-run skips them and rewrites the rest, so no record is duplicated.
"""

from __future__ import annotations

import functools
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import tqdm

from mmjax import storage
from mmjax.data.media import read_audio, read_video
from mmjax.data.sources import parse_spec
from mmjax.data.sources.arrayrecord_source import FORMAT, MANIFEST, SUFFIX, pack_record
from mmjax.data.sources.records import SourceError
from mmjax.data.transforms import BadRecord, decode_image

MAX_LISTED_BAD = 1000  # bad inputs named in the manifest (all are counted)
PREPARABLE = ("files", "folder", "wds")


def shard_name(index: int) -> str:
    return f"part-{index:05d}{SUFFIX}"


def _inputs(
    spec: str, start: int, allow_outside_root: bool = False
) -> tuple[Iterator[tuple[int, Any]], int | None]:
    """``(input index, record or BadRecord)`` from input ``start`` on, and the number of
    inputs (``None`` for tar shards, which are counted only by reading them)."""
    kind, arg = parse_spec(spec, "--source")
    if kind not in PREPARABLE:
        raise SourceError(
            f"--source {spec!r}: prepare reads {', '.join(k + ':' for k in PREPARABLE)} "
            "sources (TFDS and prepared data are ArrayRecord already)"
        )
    if kind == "wds":
        from mmjax.data.sources.wds_source import WdsIterDataset, shard_paths, wds_record

        samples = WdsIterDataset(shard_paths(arg), shuffle_shards=False, num_epochs=1)

        def stream() -> Iterator[tuple[int, Any]]:
            for i, sample in enumerate(samples):
                if i >= start:
                    yield i, _try(lambda s=sample: wds_record(s))

        return stream(), None
    if kind == "files":
        from mmjax.data.sources.files_source import FilesSource

        files = FilesSource(arg, allow_outside_root=allow_outside_root)
        # video / audio files are read into the record: prepared records carry no paths
        read: Any = functools.partial(files.raw, read_media=True)
        total = len(files)
    else:
        from mmjax.data.sources.image_folder import ImageFolderSource

        folder = ImageFolderSource(arg)
        read, total = folder.raw, len(folder)
    return ((i, _try(lambda i=i: read(i))) for i in range(start, total)), total


def _try(read: Any) -> Any:
    try:
        return read()
    except BadRecord as e:
        return e


# a record field -> the check that its encoded bytes decode (videos and audio at their
# stored frames / rate: a run samples frames and resamples when it reads them)
DECODE_CHECKS = {"image": decode_image, "video": read_video, "audio": read_audio}


def _verified(record: dict[str, Any]) -> dict[str, Any]:
    """``record`` if its image / video / audio decode, else ``BadRecord`` naming it."""
    fields = [f for f in DECODE_CHECKS if record.get(f) is not None]
    if not fields:
        raise BadRecord(f"record {record.get('key')} has no encoded image, video or audio")
    for field in fields:
        if not isinstance(record[field], bytes):
            raise BadRecord(f"record {record.get('key')} has no encoded {field}")
        try:
            DECODE_CHECKS[field](record[field])
        except BadRecord as e:
            raise BadRecord(f"{record.get('key')}: {e}") from None
    return record


class _Manifest:
    """``OUT/manifest.json``: the options, the complete shards and the bad inputs."""

    def __init__(self, out: Path, spec: str, shard_size: int):
        self.path = out / MANIFEST
        fresh = {
            "format": FORMAT,
            "source": spec,
            "shard_size": shard_size,
            "complete": False,
            "shards": {},
            "bad": [],
            "num_bad": 0,
        }
        self.data = json.loads(self.path.read_text()) if self.path.is_file() else fresh
        for key in ("format", "source", "shard_size"):
            if self.data.get(key) != fresh[key]:
                raise SourceError(
                    f"--out {out} holds a prepare with {key}={self.data.get(key)!r}, not "
                    f"{fresh[key]!r}; use another --out directory (or the same options)"
                )

    def done(self, name: str, out: Path) -> bool:
        return name in self.data["shards"] and (out / name).is_file()

    def add(self, name: str, entry: dict[str, Any], bad: list[dict[str, Any]]) -> None:
        self.data["shards"][name] = entry
        # Bad inputs of a shard written again are listed once.
        self.data["bad"] = [b for b in self.data["bad"] if b["shard"] != name]
        self.data["bad"] = (self.data["bad"] + bad)[:MAX_LISTED_BAD]
        self.data["num_bad"] = sum(s["bad"] for s in self.data["shards"].values())
        self.save()

    def save(self) -> None:
        shards = self.data["shards"].values()
        self.data["num_records"] = sum(s["records"] for s in shards)
        tmp = self.path.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(self.data, indent=1) + "\n")
        os.replace(tmp, self.path)


def prepare(
    spec: str,
    out: str | Path,
    shard_size: int = 1000,
    verify: bool = True,
    progress: bool = True,
    allow_outside_root: bool = False,
) -> dict[str, Any]:
    """Writes ``spec``'s records to ``out`` (see the module docstring); returns the manifest.

    ``verify`` decodes every image, video and audio once and leaves out those that do not
    decode.
    ``allow_outside_root`` lets a captions file name images outside its directory.
    """
    from array_record.python.array_record_module import ArrayRecordWriter

    if shard_size < 1:
        raise SourceError(f"--shard-size must be >= 1, got {shard_size}")
    if storage.is_remote(out):  # written in a local directory, copied up when complete
        mirror = storage.LocalMirror(storage.user_path(out))
        try:
            return prepare(spec, mirror.local, shard_size, verify, progress)
        finally:
            mirror.close()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    manifest = _Manifest(out, spec, shard_size)
    if manifest.data["complete"]:
        return manifest.data
    for leftover in out.glob(f"*{SUFFIX}.tmp"):  # a shard an interrupted run did not finish
        leftover.unlink()
    # Whole shards at the front that are complete need not be read again (random access).
    first = 0
    while manifest.done(shard_name(first), out):
        first += 1
    inputs, total = _inputs(spec, first * shard_size, allow_outside_root)
    bar = tqdm.tqdm(
        total=total, initial=first * shard_size, unit="rec", desc="prepare", disable=not progress
    )
    shard, writer, entry, bad = -1, None, {}, []
    tmp = out / "unused"

    def finish() -> None:
        if writer is not None:
            writer.close()
            os.replace(tmp, out / shard_name(shard))
            manifest.add(shard_name(shard), entry, bad)

    for index, record in inputs:
        bar.update(1)
        if index // shard_size != shard:
            finish()
            shard, writer = index // shard_size, None
            entry = {"first_input": shard * shard_size, "inputs": 0, "records": 0, "bad": 0}
            bad = []
            if manifest.done(shard_name(shard), out):  # tar shards: complete, read past it
                continue
            tmp = out / (shard_name(shard) + ".tmp")
            writer = ArrayRecordWriter(str(tmp), "group_size:1")
        if writer is None:
            continue
        entry["inputs"] += 1
        if not isinstance(record, BadRecord) and verify:
            record = _try(lambda r=record: _verified(r))
        if isinstance(record, BadRecord):
            entry["bad"] += 1
            bad.append({"shard": shard_name(shard), "input": index, "reason": str(record)})
            continue
        writer.write(pack_record(record))
        entry["records"] += 1
    finish()
    bar.close()
    manifest.data["complete"] = True
    manifest.save()
    return manifest.data
