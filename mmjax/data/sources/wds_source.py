"""WebDataset-style tar shards, streamed: ``config.data.source='wds:/data/shards-{000..127}.tar'``.

A shard is a tar file whose members are grouped into samples by key: consecutive
members ``<key>.<ext>`` with the same key (``<key>`` = the path up to the first dot of
the file name) form one sample ``{ext: bytes}``, e.g. ``000123.jpg`` + ``000123.txt``.
A sample's image is its ``jpg``/``jpeg``/``png``/``webp`` member, its video an
``mp4``/``webm``/``avi``/``mkv``/``mov`` member, its audio a ``wav``/``flac``/``ogg``/
``mp3`` member (at least one of the three; all kept encoded and decoded by the task's
example, the video / audio as a ``files:`` row's files are: ``mmjax.data.media``); its
caption the ``txt`` member, or ``json`` (``caption`` / ``captions`` / ``label`` /
``question`` / ``answer`` / ``answers``); a ``cls`` member is an int label. A member that
does not decode is a bad record named ``<shard>:<key>``.

``WdsIterDataset`` is a grain ``IterDataset`` (shards are read front to back, not by
index): shards are split between processes (``shards[process::processes]``) and, by
``set_slice``, between grain worker processes; each epoch reads its shards in a new
order. The iterator state is ``(epoch, shard, offset)``, so a restored iterator continues
at the exact sample (shuffling is a ``WindowShuffleIterDataset`` on top, whose state
re-reads its window from there).
"""

from __future__ import annotations

import glob
import json
import re
import tarfile
import warnings
from collections.abc import Iterator, Sequence
from typing import Any

import grain
import numpy as np

from mmjax import storage
from mmjax.data.sources.records import DEFAULT_CAPTION_TEMPLATE, SourceError, finalize
from mmjax.data.transforms import BadRecord

IMAGE_EXTS = ("jpg", "jpeg", "png", "webp")
VIDEO_EXTS = ("mp4", "webm", "avi", "mkv", "mov")
AUDIO_EXTS = ("wav", "flac", "ogg", "mp3")
# record field -> the member extensions that fill it (the first present wins)
MEDIA_MEMBERS = {"image": IMAGE_EXTS, "video": VIDEO_EXTS, "audio": AUDIO_EXTS}
_BRACE = re.compile(r"\{([^{}]*)\}")
_RANGE = re.compile(r"^(-?\d+)\.\.(-?\d+)$")

Sample = dict[str, Any]  # {'__key__': str, ext: bytes, ...}


def expand_braces(pattern: str) -> list[str]:
    """``'s-{000..002}.tar'`` -> ``['s-000.tar', 's-001.tar', 's-002.tar']`` (numbers keep
    the start's zero padding); ``{a,b}`` lists alternatives; several braces multiply."""
    match = _BRACE.search(pattern)
    if match is None:
        return [pattern]
    body = match.group(1)
    numeric = _RANGE.match(body)
    if numeric:
        lo, hi = int(numeric.group(1)), int(numeric.group(2))
        width = len(numeric.group(1))
        options = [f"{i:0{width}d}" for i in range(lo, hi + 1)]
    else:
        options = body.split(",")
    head, tail = pattern[: match.start()], pattern[match.end() :]
    return [p for option in options for p in expand_braces(head + option + tail)]


def shard_paths(spec: str) -> list[str]:
    """Shard files of ``spec`` (braces, then globs), in order; each must exist."""
    paths: list[str] = []
    for pattern in expand_braces(spec):
        if glob.has_magic(pattern):
            matched = storage.glob(pattern)  # also gs://bucket/shards-*.tar
            if not matched:
                raise SourceError(f"config.data.source wds:{spec}: {pattern!r} matches no file")
            paths.extend(matched)
        else:
            paths.append(pattern)
    missing = [p for p in paths if not storage.user_path(p).is_file()]
    if missing:
        raise SourceError(
            f"config.data.source wds:{spec}: {len(missing)} of {len(paths)} shards do not "
            f"exist, e.g. {missing[:3]}"
        )
    return paths


def _split_name(name: str) -> tuple[str, str]:
    """``'dir/000123.seg.png'`` -> ``('dir/000123', 'seg.png')``."""
    directory, _, base = name.rpartition("/")
    key, _, ext = base.partition(".")
    return (f"{directory}/{key}" if directory else key), ext.lower()


def read_shard(path: str, start: int = 0) -> Iterator[Sample]:
    """The samples of one tar shard, from sample ``start`` on (earlier ones are passed over
    without reading their contents)."""
    with storage.open_binary(path) as f, tarfile.open(fileobj=f, mode="r|*") as tar:
        index, key, sample = -1, None, None
        for member in tar:
            if not member.isfile():
                continue
            member_key, ext = _split_name(member.name)
            if member_key != key:
                if sample is not None:
                    yield sample
                index, key = index + 1, member_key
                sample = {"__key__": member_key} if index >= start else None
            if sample is not None and ext:
                data = tar.extractfile(member).read()
                if len(data) != member.size:  # a shard cut short inside this member
                    sample["__error__"] = (
                        f"member {member.name} is truncated ({len(data)} of {member.size} bytes)"
                    )
                sample[ext] = data
        if sample is not None:
            yield sample


def wds_record(sample: Sample, template: str = DEFAULT_CAPTION_TEMPLATE) -> dict[str, Any]:
    """A shard sample as a source record (records.py); ``BadRecord`` for unreadable metadata."""
    where = f"{sample.get('__shard__', '?')}:{sample['__key__']}"
    record: dict[str, Any] = {"key": where}
    if "__error__" in sample:
        raise BadRecord(f"sample {where}: {sample['__error__']}")
    for field, exts in MEDIA_MEMBERS.items():
        member = next((e for e in exts if e in sample), None)
        if member is not None:
            record[field] = sample[member]
    if not any(field in record for field in MEDIA_MEMBERS):
        exts = ", ".join(e for group in MEDIA_MEMBERS.values() for e in group)
        raise BadRecord(f"sample {where} has no image, video or audio member ({exts})")
    if "json" in sample:
        try:
            meta = json.loads(sample["json"])
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise BadRecord(f"sample {where}: unreadable json ({e})") from None
        if not isinstance(meta, dict):
            raise BadRecord(f"sample {where}: json is not an object")
        for key in ("caption", "captions", "label", "question", "answer", "answers"):
            if meta.get(key) is not None:
                record[key] = _json_field(meta[key], key, where)
    if "txt" in sample:
        record["caption"] = sample["txt"].decode("utf-8", errors="replace").strip()
    if "cls" in sample:
        try:
            record["label"] = int(sample["cls"].decode().strip())
        except ValueError:
            raise BadRecord(f"sample {where}: cls is not an int") from None
    return finalize(record, template)


def _json_field(value: Any, key: str, where: str) -> Any:
    """A sample's json field with the type a record needs, else ``BadRecord`` naming it
    (a ``captions`` string must not become a list of its characters)."""
    if key in ("captions", "answers"):
        if isinstance(value, list) and all(isinstance(v, str) for v in value):
            return value
        raise BadRecord(
            f"sample {where}: json {key!r} must be a list of strings, got {type(value).__name__}"
        )
    if key == "label":
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, str) and value.strip().lstrip("-").isdigit():
            return int(value)
        raise BadRecord(f"sample {where}: json 'label' must be an integer, got {value!r}")
    if not isinstance(value, str):
        raise BadRecord(
            f"sample {where}: json {key!r} must be a string, got {type(value).__name__}"
        )
    return value


class WdsIterDataset(grain.IterDataset):
    """The samples of ``shards``, shard after shard, epoch after epoch (``num_epochs=None``:
    forever); each epoch reads the shards in an order drawn from ``(seed, epoch)``
    (``shuffle_shards``). Samples carry ``__pos__ = (epoch, shard id, offset)``, which
    seeds their augmentation, and ``__shard__`` (the path)."""

    def __init__(
        self,
        shards: Sequence[str],
        seed: int = 0,
        shuffle_shards: bool = True,
        num_epochs: int | None = None,
    ):
        super().__init__()
        self.shards = list(enumerate(shards))  # (shard id, path)
        self.seed, self.shuffle_shards, self.num_epochs = seed, shuffle_shards, num_epochs

    def set_slice(self, sl: slice, sequential_slice: bool = False) -> None:
        """Keeps ``shards[sl]`` (grain gives each worker process its slice)."""
        del sequential_slice
        self.shards = self.shards[sl]

    def __iter__(self) -> _WdsIterator:
        return _WdsIterator(self)

    def __str__(self) -> str:
        return f"WdsIterDataset({len(self.shards)} shards)"


class _WdsIterator(grain.DatasetIterator):
    def __init__(self, ds: WdsIterDataset):
        super().__init__()
        self.ds = ds
        self.epoch, self.shard, self.offset = 0, 0, 0
        self._samples: Iterator[Sample] | None = None
        self._read_this_epoch = False
        self._order_epoch, self._epoch_order = -1, np.arange(0)

    def _order(self) -> np.ndarray:
        """This epoch's shard order (drawn once per epoch)."""
        if self._order_epoch != self.epoch:
            n = len(self.ds.shards)
            rng = np.random.default_rng([self.ds.seed, 4, self.epoch])
            self._epoch_order = rng.permutation(n) if self.ds.shuffle_shards else np.arange(n)
            self._order_epoch = self.epoch
        return self._epoch_order

    def _next_shard(self) -> None:
        self._close()
        self.shard, self.offset = self.shard + 1, 0
        if self.shard == len(self.ds.shards):
            if not self._read_this_epoch:
                raise ValueError(
                    f"wds: no samples in any of {[p for _, p in self.ds.shards][:3]}..."
                )
            self.epoch, self.shard, self._read_this_epoch = self.epoch + 1, 0, False

    def __next__(self) -> Sample:
        while True:
            if not self.ds.shards or (
                self.ds.num_epochs is not None and self.epoch >= self.ds.num_epochs
            ):
                raise StopIteration
            shard_id, path = self.ds.shards[int(self._order()[self.shard])]
            if self._samples is None:
                self._samples = read_shard(path, self.offset)
            try:
                sample = next(self._samples)
            except StopIteration:
                self._next_shard()
                continue
            except (tarfile.TarError, OSError, EOFError) as e:  # a truncated / corrupt shard
                warnings.warn(
                    f"wds: stopped reading shard {path} at sample {self.offset}: {e}", stacklevel=2
                )
                self._next_shard()
                continue
            sample["__pos__"] = (self.epoch, shard_id, self.offset)
            sample["__shard__"] = path
            self.offset += 1
            self._read_this_epoch = True
            return sample

    def _close(self) -> None:
        if self._samples is not None:
            self._samples.close()
            self._samples = None

    def get_state(self) -> dict[str, Any]:
        return {"epoch": self.epoch, "shard": self.shard, "offset": self.offset}

    def set_state(self, state: dict[str, Any]) -> None:
        self._close()
        self.epoch, self.shard, self.offset = state["epoch"], state["shard"], state["offset"]
        self._read_this_epoch = self.offset > 0 or self.shard > 0

    def __str__(self) -> str:
        return f"WdsIterator(epoch={self.epoch}, shard={self.shard}, offset={self.offset})"


class WdsListSource:
    """Every sample of the shards, in order, held in memory: random access for eval splits
    and for ``mmjax data prepare``."""

    def __init__(self, spec: str, template: str = DEFAULT_CAPTION_TEMPLATE):
        self.spec, self.template = spec, template
        ds = WdsIterDataset(shard_paths(spec), shuffle_shards=False, num_epochs=1)
        self.samples = list(ds)

    def __len__(self) -> int:
        return len(self.samples)

    def __repr__(self) -> str:
        return f"WdsListSource({self.spec!r})"

    def __getitem__(self, index: int) -> dict[str, Any]:
        return wds_record(self.samples[int(index)], self.template)

    raw = __getitem__
