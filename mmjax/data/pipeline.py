"""grain input pipelines: source -> shuffle -> repeat -> map -> batch -> process shard.

Each process reads its own slice of the data and produces its share of the
global batch; ``mmjax.parallel.sharding.global_batch`` stitches the shares into global
arrays. The training iterator is a grain ``DatasetIterator`` whose state
(``get_state``/``set_state``) is saved with every checkpoint.

Random-access sources (synthetic, TFDS, files, image folders, prepared ArrayRecord; see
``mmjax.data.sources``) are read by position, so the global batch of step ``t`` is a
function of ``t`` alone. ``wds:`` tar shards are streamed (``WdsIterDataset``): shards
are split between processes and worker processes, each epoch reads them in a new order
through a window shuffle, and the iterator state is (epoch, shard, offset).
``config.data.num_workers > 0`` runs the per-record work in grain worker processes.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any

import grain
import jax
import numpy as np

from mmjax.data import sources
from mmjax.data.augment import make_image_fn
from mmjax.data.sources.records import record_captions, sample_caption, with_caption
from mmjax.data.sources.wds_source import WdsIterDataset, shard_paths, wds_record
from mmjax.data.tokenizer import TextTokenizer
from mmjax.data.transforms import (
    BadRecord,
    ExampleFn,
    ImageTextExample,
    set_max_image_pixels,
    to_rgb_uint8,
)
from mmjax.data.workers import with_workers

MAX_REPLACEMENTS = 100  # tries to find a good record for one batch slot
DEFAULT_SHUFFLE_BUFFER = 1000  # wds: samples shuffled together (one window)


class BadRecordError(ValueError):
    """A bad record under ``config.data.bad_records='fail'``; the message names it."""


class _Examples:
    """Reads a record and turns it into an example, or ``None`` for a bad record under
    ``bad_records='skip'``; one implementation for the random-access and streaming paths.

    ``key`` identifies the record's slot (its position, or a sample's (epoch, shard,
    offset)) and seeds its generators: ``[seed, 1, *key]`` for the example (augmentation)
    and ``[seed, 3, *key]`` for drawing one caption of a multi-caption record, so the
    caption changes every epoch and the augmentation stream is the same as without it.
    An image of another size than ``image_size`` is an error naming the transform keys.
    """

    def __init__(self, example: ExampleFn, bad_records: str, seed: int, image_size: int = 0):
        if bad_records not in ("skip", "fail"):
            raise ValueError(
                f"config.data.bad_records must be 'skip' or 'fail', got {bad_records!r}"
            )
        self.example, self.bad_records = example, bad_records
        self.seed, self.image_size = seed, image_size

    def __call__(
        self, read: Callable[[], dict[str, Any]], where: str, key: tuple[int, ...]
    ) -> dict[str, np.ndarray] | None:
        try:
            record = read()
            if record.get("captions") is not None:
                record = sample_caption(record, np.random.default_rng([self.seed, 3, *key]))
            out = self.example(record, np.random.default_rng([self.seed, 1, *key]))
        except BadRecord as e:
            if self.bad_records == "fail":
                raise BadRecordError(
                    f"bad record {where}: {e} (config.data.bad_records='skip' skips such records)"
                ) from None
            return None
        _check_image_size(out, self.image_size, where, "train_transform")
        return out


def _check_image_size(out: dict[str, np.ndarray], size: int, where: str, key: str) -> None:
    """Real images come in many sizes; batching needs the one ``data.image_size``."""
    image = out.get("image")
    if size and image is not None and tuple(image.shape[:2]) != (size, size):
        raise ValueError(
            f"record {where}: image is {tuple(image.shape[:2])} after config.data.{key}, "
            f"not config.data.image_size={size}; set config.data.{key} (e.g. "
            "'random_resized_crop' for training, 'resize_center_crop' for eval)"
        )


class _ReadRecord:
    """``(position, source index) -> example`` for the shuffled, repeated order of records.

    A bad record (``BadRecord``) either fails, naming it, or is replaced by the record at
    the same position of the next epoch (another record: epochs are shuffled differently),
    so batches stay full and every position maps to the same example whatever the
    iteration order. ``skipped`` counts the bad records read for this slot.
    """

    def __init__(self, source: Any, order: grain.MapDataset, examples: _Examples):
        self.source, self.order, self.examples = source, order, examples

    def __call__(self, position: int, index: int) -> dict[str, np.ndarray]:
        n = len(self.source)
        for skipped in range(MAX_REPLACEMENTS):
            i = int(index if skipped == 0 else self.order[position + skipped * n])
            out = self.examples(
                lambda i=i: self.source[i], f"{i} of {self.source!r}", (int(position), skipped)
            )
            if out is not None:
                out["skipped"] = np.int32(skipped)
                return out
        raise BadRecordError(
            f"{MAX_REPLACEMENTS} bad records in a row at position {position} of {self.source!r}"
        )


class _StreamExamples(grain.IterDataset):
    """Samples of a ``WdsIterDataset`` (maybe window-shuffled) -> examples; a bad sample
    is passed over (counted in the next example's ``skipped``) or fails naming it."""

    def __init__(self, parent: grain.IterDataset, examples: _Examples, template: str):
        super().__init__(parent)
        self.examples, self.template = examples, template

    def __iter__(self) -> _StreamExamplesIterator:
        return _StreamExamplesIterator(self._parent.__iter__(), self.examples, self.template)


class _StreamExamplesIterator(grain.DatasetIterator):
    def __init__(self, parent: grain.DatasetIterator, examples: _Examples, template: str):
        super().__init__(parent)
        self.examples, self.template = examples, template

    def __next__(self) -> dict[str, np.ndarray]:
        for skipped in range(MAX_REPLACEMENTS):
            sample = next(self._parent)
            out = self.examples(
                lambda s=sample: wds_record(s, self.template),
                f"{sample['__shard__']}:{sample['__key__']}",
                tuple(int(x) for x in sample["__pos__"]),
            )
            if out is not None:
                out["skipped"] = np.int32(skipped)
                return out
        raise BadRecordError(f"{MAX_REPLACEMENTS} bad samples in a row in the wds shards")

    # Each example consumes whole samples, so the parent's state is this iterator's.
    def get_state(self) -> dict[str, Any]:
        return self._parent.get_state()

    def set_state(self, state: dict[str, Any]) -> None:
        self._parent.set_state(state)


def build_source(data_cfg: Any, split: str) -> Any:
    """The random-access source of ``split`` (``'train'`` | ``'eval'``): ``config.data.source``
    / ``config.data.eval_source`` (see ``mmjax.data.sources``)."""
    return sources.open_source(sources.source_spec(data_cfg, split), data_cfg, split)


def default_example(tokenizer: TextTokenizer, data_cfg: Any, train: bool) -> ExampleFn:
    """The image-text example (``ImageTextExample``) for ``data_cfg``, with its host image
    transform (``make_image_fn``: ``data.train_transform`` / ``data.eval_transform``, or
    ``data.image_processor``); tasks that need other inputs provide
    ``task.make_example(data_cfg, train)`` (``mmjax.tasks.base.Task``) instead."""
    return ImageTextExample(tokenizer, make_image_fn(data_cfg, train))


def local_batch_size(global_batch: int) -> int:
    """This process's share of ``global_batch``; it must divide evenly."""
    count = jax.process_count()
    if global_batch % count:
        raise ValueError(f"batch size {global_batch} is not divisible by {count} processes")
    return global_batch // count


def _checked_size(data_cfg: Any, split: str) -> int:
    """The image side every example of ``split`` must have; 0 (unchecked) when that split
    reads the built-in shapes, whose images are made at that size (a resizing example fn
    may change it on purpose)."""
    if sources.is_shapes_world(data_cfg, split):
        return 0
    return int(data_cfg.get("image_size", 0) or 0)


def train_dataset(
    data_cfg: Any,
    tokenizer: TextTokenizer,
    global_batch: int,
    seed: int,
    start_step: int = 0,
    example: ExampleFn | None = None,
) -> grain.IterDataset:
    """Infinite, shuffled (differently each epoch), batched training data for this process.

    Bad records (unreadable / missing image, empty caption) are skipped and replaced
    under ``data_cfg.bad_records='skip'`` (each batch's int32 ``skipped`` ``[batch]``
    counts them), or raise ``BadRecordError`` naming the record under ``'fail'``.

    ``start_step`` starts at the global batch of that step: the position of a
    random-access pipeline is a function of the step alone, so a run restored on
    another number of processes (whose saved iterator states do not apply) still
    continues with the right data (a ``wds:`` stream cannot be positioned by step and
    starts over, with a warning). ``example`` (default ``default_example``) turns a
    record and its position-seeded generator into model inputs. With
    ``data_cfg.num_workers > 0`` the records are read in that many worker processes
    (same batches).
    """
    example = example or default_example(tokenizer, data_cfg, train=True)
    set_max_image_pixels(data_cfg)
    bad_records = data_cfg.get("bad_records", "skip")
    examples = _Examples(example, bad_records, seed, _checked_size(data_cfg, "train"))
    kind, arg = sources.parse_spec(data_cfg.source)
    if kind == "wds":
        ds = _stream_dataset(data_cfg, arg, global_batch, seed, start_step, examples)
    else:
        source = build_source(data_cfg, "train")
        # Shuffled source indices; the same permutation as shuffling the source itself.
        order = grain.MapDataset.range(len(source)).shuffle(seed=seed).repeat(None)
        mapped = order.map_with_index(_ReadRecord(source, order, examples))
        # Chunks of one process's share; process p takes chunk t * P + p at step t, so the
        # global batch at step t is records [t * B, (t + 1) * B) in order whatever the
        # number of processes P (a run can resume on another topology and see the same
        # data), and each process decodes only its own records (grain maps lazily).
        batched = mapped.batch(local_batch_size(global_batch), drop_remainder=True)
        count = jax.process_count()
        batched = batched[start_step * count + jax.process_index() :: count]
        ds = batched.to_iter_dataset(
            grain.ReadOptions(
                num_threads=data_cfg.num_threads, prefetch_buffer_size=data_cfg.prefetch
            )
        )
    return with_workers(ds, int(data_cfg.get("num_workers", 0) or 0))


def _stream_dataset(
    data_cfg: Any, spec: str, global_batch: int, seed: int, start_step: int, examples: _Examples
) -> grain.IterDataset:
    """Training batches from ``wds:`` tar shards: this process's shards, window-shuffled
    samples (``data.shuffle_buffer``; 0 or 1: in shard order), examples, batches."""
    shards = shard_paths(spec)
    count = jax.process_count()
    if len(shards) < count:
        raise ValueError(
            f"config.data.source wds:{spec}: {len(shards)} shards for {count} processes; "
            "every process needs at least one shard"
        )
    if start_step:
        warnings.warn(
            f"wds:{spec} cannot be positioned by step: restored on another number of "
            f"processes, the data restarts from the first epoch at step {start_step}",
            stacklevel=2,
        )
    ds: grain.IterDataset = WdsIterDataset(shards[jax.process_index() :: count], seed=seed)
    window = int(data_cfg.get("shuffle_buffer", DEFAULT_SHUFFLE_BUFFER) or 0)
    if window > 1:
        ds = grain.experimental.WindowShuffleIterDataset(ds, window_size=window, seed=seed)
    ds = _StreamExamples(ds, examples, sources.template(data_cfg))
    # No thread prefetch: grain 0.2's ThreadPrefetch iterators raise from __del__ when the
    # interpreter exits with one open. Parallel reading of shards: data.num_workers.
    return ds.batch(local_batch_size(global_batch), drop_remainder=True)


def eval_rows(source: Any) -> tuple[np.ndarray, np.ndarray]:
    """The eval rows of ``source``: ``(record index, caption index)`` ``[rows]`` each; a
    record with several captions gives one row per caption (in order), any other one row.
    Captions are counted by ``source.num_captions(i)`` where the source has it (files),
    else by reading the records (their images stay encoded)."""
    n = len(source)
    count = getattr(source, "num_captions", None) or (lambda i: len(record_captions(source[i])))
    counts = np.asarray([max(1, count(i)) for i in range(n)], np.int64)
    records = np.repeat(np.arange(n), counts)
    starts = np.repeat(np.cumsum(counts) - counts, counts)
    return records, np.arange(len(records)) - starts


def eval_batches(
    data_cfg: Any, tokenizer: TextTokenizer, global_batch: int, example: ExampleFn | None = None
) -> list[dict[str, np.ndarray]]:
    """The whole eval split as this process's share of each global batch, in order.

    A row is one (image, caption) pair: a record with several captions gives a row per
    caption, and every batch carries int32 ``image_id`` ``[batch]`` (the record's index in
    the source) so retrieval counts an image once. The last batch is padded with repeats
    of row 0 and carries a bool ``valid`` mask, so every eval row counts exactly once; a
    bad record's rows are left out the same way (``valid`` False) under
    ``data.bad_records='skip'``, and raise ``BadRecordError`` under ``'fail'``.
    """
    source = build_source(data_cfg, "eval")
    records, captions = eval_rows(source)
    n = len(records)
    per_process = local_batch_size(global_batch)
    example = example or default_example(tokenizer, data_cfg, train=False)
    set_max_image_pixels(data_cfg)
    fail = data_cfg.get("bad_records", "skip") == "fail"
    size = _checked_size(data_cfg, "eval")
    read = _EvalReader(source)
    batches, bad = [], 0
    for start in range(0, n, global_batch):
        lo = start + jax.process_index() * per_process
        idx = np.arange(lo, lo + per_process)
        valid = idx < n
        rows = []
        for i, v in zip(idx, valid, strict=True):
            row = int(i) if v else 0
            rng = np.random.default_rng([0, 2, int(i)])
            try:
                out = example(read(int(records[row]), int(captions[row])), rng)
            except BadRecord as e:
                where = f"{int(records[row])} of {source!r}"
                if fail:
                    raise BadRecordError(
                        f"bad eval record {where}: {e} "
                        "(config.data.bad_records='skip' leaves such records out)"
                    ) from None
                bad, out = bad + 1, None
            if out is not None:
                _check_image_size(out, size, f"{int(records[row])} of {source!r}", "eval_transform")
            rows.append(out)
        good = next((r for r in rows if r is not None), None)
        if good is None:
            raise BadRecordError(f"every eval row of a batch is bad in {source!r}")
        batch = {k: np.stack([(r or good)[k] for r in rows]) for k in good}
        batch["valid"] = valid & np.asarray([r is not None for r in rows])
        batch["image_id"] = np.where(valid, records[np.where(valid, idx, 0)], 0).astype(np.int32)
        batches.append(batch)
    if bad and jax.process_index() == 0:
        warnings.warn(f"eval: left out {bad} rows of bad records in {source!r}", stacklevel=2)
    return batches


class _EvalReader:
    """``(record index, caption index) -> record`` with that one caption; consecutive rows
    of one record share its decoded image (decoded once, not once per caption)."""

    def __init__(self, source: Any):
        self.source = source
        self._index, self._record = -1, None

    def __call__(self, index: int, caption: int) -> dict[str, Any]:
        if index != self._index:
            record = self.source[index]
            if record.get("captions") is not None and "image" in record:  # decode it once
                record = dict(record, image=to_rgb_uint8(record.get("image")))
            self._index, self._record = index, record
        record = self._record
        texts = record_captions(record)
        return with_caption(record, texts[caption]) if len(texts) > 1 else record
