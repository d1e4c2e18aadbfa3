"""grain input pipelines: source -> shuffle -> repeat -> map -> batch -> process shard.

Each process reads its own slice of the data and produces its share of the
global batch; ``mmjax.sharding.global_batch`` stitches the shares into global
arrays. The training iterator is a grain ``DatasetIterator`` whose state
(``get_state``/``set_state``) is saved with every checkpoint.
"""

from __future__ import annotations

from typing import Any

import grain
import jax
import numpy as np

from mmjax.data.synthetic import SyntheticShapes
from mmjax.data.tokenizer import TextTokenizer
from mmjax.data.transforms import (
    BadRecord,
    ExampleFn,
    ImageFn,
    ImageTextExample,
    image_processor,
)

MAX_REPLACEMENTS = 100  # tries to find a good record for one batch slot


class BadRecordError(ValueError):
    """A bad record under ``config.data.bad_records='fail'``; the message names it."""


class _ReadRecord:
    """``(position, source index) -> example`` for the shuffled, repeated order of records.

    A bad record (``BadRecord``) either fails, naming it, or is replaced by the record at
    the same position of the next epoch (another record: epochs are shuffled differently),
    so batches stay full and every position maps to the same example whatever the
    iteration order. ``skipped`` counts the bad records read for this slot.
    """

    def __init__(
        self, source: Any, order: grain.MapDataset, example: Any, bad_records: str, seed: int
    ):
        if bad_records not in ("skip", "fail"):
            raise ValueError(
                f"config.data.bad_records must be 'skip' or 'fail', got {bad_records!r}"
            )
        self.source, self.order, self.example = source, order, example
        self.bad_records = bad_records
        self.seed = seed

    def _rng(self, position: int, attempt: int) -> np.random.Generator:
        """The record's own random stream (augmentation), a function of its position."""
        return np.random.default_rng([self.seed, 1, int(position), attempt])

    def __call__(self, position: int, index: int) -> dict[str, np.ndarray]:
        n = len(self.source)
        for skipped in range(MAX_REPLACEMENTS):
            i = int(index if skipped == 0 else self.order[position + skipped * n])
            try:
                out = self.example(self.source[i], self._rng(position, skipped))
            except BadRecord as e:
                if self.bad_records == "fail":
                    raise BadRecordError(
                        f"bad record {i} of {self.source!r}: {e} "
                        "(config.data.bad_records='skip' skips such records)"
                    ) from None
                continue
            out["skipped"] = np.int32(skipped)
            return out
        raise BadRecordError(
            f"{MAX_REPLACEMENTS} bad records in a row at position {position} of {self.source!r}"
        )


def build_source(data_cfg: Any, split: str) -> Any:
    """The random-access source named by ``config.data.source``."""
    if data_cfg.source == "synthetic":
        num = data_cfg.train_records if split == "train" else data_cfg.eval_records
        return SyntheticShapes(
            split,
            num_records=num,
            image_size=data_cfg.image_size,
            seed=data_cfg.synthetic_seed,
            corrupt_fraction=float(data_cfg.get("synthetic_corrupt_fraction", 0.0) or 0.0)
            if split == "train"
            else 0.0,
        )
    raise ValueError(f"config.data.source: unknown source {data_cfg.source!r}; known: 'synthetic'")


def _image_fn(data_cfg: Any) -> ImageFn | None:
    """Host-side resize / crop of ``config.data.image_processor`` (an HF model dir), if set."""
    proc = image_processor(data_cfg.get("image_processor"))
    return None if proc is None else (lambda image, rng: proc.resize_crop(image))


def default_example(tokenizer: TextTokenizer, data_cfg: Any, train: bool) -> ExampleFn:
    """The image-text example (``ImageTextExample``) for ``data_cfg``; tasks that need other
    inputs provide ``task.make_example(tokenizer, data_cfg, train)`` instead."""
    return ImageTextExample(tokenizer, _image_fn(data_cfg))


def local_batch_size(global_batch: int) -> int:
    """This process's share of ``global_batch``; it must divide evenly."""
    count = jax.process_count()
    if global_batch % count:
        raise ValueError(f"batch size {global_batch} is not divisible by {count} processes")
    return global_batch // count


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
    continues with the right data. ``example`` (default ``default_example``) turns a
    record and its position-seeded generator into model inputs.
    """
    source = build_source(data_cfg, "train")
    # Shuffled source indices; the same permutation as shuffling the source itself.
    order = grain.MapDataset.range(len(source)).shuffle(seed=seed).repeat(None)
    example = example or default_example(tokenizer, data_cfg, train=True)
    bad_records = data_cfg.get("bad_records", "skip")
    ds = order.map_with_index(_ReadRecord(source, order, example, bad_records, seed))
    # Chunks of one process's share; process p takes chunk t * P + p at step t, so the
    # global batch at step t is records [t * B, (t + 1) * B) in order whatever the
    # number of processes P (a run can resume on another topology and see the same
    # data), and each process decodes only its own records (grain maps lazily).
    ds = ds.batch(local_batch_size(global_batch), drop_remainder=True)
    count = jax.process_count()
    ds = ds[start_step * count + jax.process_index() :: count]
    return ds.to_iter_dataset(
        grain.ReadOptions(num_threads=data_cfg.num_threads, prefetch_buffer_size=data_cfg.prefetch)
    )


def eval_batches(
    data_cfg: Any, tokenizer: TextTokenizer, global_batch: int, example: ExampleFn | None = None
) -> list[dict[str, np.ndarray]]:
    """The whole eval split as this process's share of each global batch, in order.

    The last batch is padded with repeats of record 0 and carries a bool
    ``valid`` mask, so every eval record counts exactly once.
    """
    source = build_source(data_cfg, "eval")
    n = len(source)
    per_process = local_batch_size(global_batch)
    example = example or default_example(tokenizer, data_cfg, train=False)
    batches = []
    for start in range(0, n, global_batch):
        lo = start + jax.process_index() * per_process
        idx = np.arange(lo, lo + per_process)
        valid = idx < n
        records = [
            example(source[int(i) if v else 0], np.random.default_rng([0, 2, int(i)]))
            for i, v in zip(idx, valid, strict=True)
        ]
        batch = {k: np.stack([r[k] for r in records]) for k in records[0]}
        batch["valid"] = valid
        batches.append(batch)
    return batches
