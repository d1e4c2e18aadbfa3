"""grain worker processes for the input pipeline (``config.data.num_workers``).

    ds = with_workers(train_dataset(...), num_workers=2)

Each worker process runs the whole per-record pipeline (read, decode, augment, batch)
on its slice of the batches; the main process interleaves them back into the same order
as without workers, so the batches do not depend on the number of workers. The iterator
state (``get_state``/``set_state``, saved in checkpoints) holds one position per worker:
a state saved with N workers restores into an iterator with N workers.
"""

from __future__ import annotations

import grain
from absl import flags

DEFAULT_PER_WORKER_BUFFER = 2  # batches each worker keeps ready


def with_workers(
    ds: grain.IterDataset,
    num_workers: int,
    per_worker_buffer_size: int = DEFAULT_PER_WORKER_BUFFER,
) -> grain.IterDataset:
    """``ds`` prefetched by ``num_workers`` processes (``ds.mp_prefetch``); ``0`` -> ``ds``.

    ``ds`` must come from ``MapDataset.to_iter_dataset`` (grain slices the MapDataset
    below it between the workers) and everything it maps must be picklable (workers are
    spawned, not forked). Close the iterator (``it.close()``) to stop the workers early.
    """
    if num_workers < 0:
        raise ValueError(f"config.data.num_workers must be >= 0, got {num_workers}")
    if per_worker_buffer_size < 1:
        raise ValueError(
            f"config.data.per_worker_buffer_size must be >= 1, got {per_worker_buffer_size}"
        )
    if num_workers == 0:
        return ds
    # grain reads its settings from absl flags. Outside ``absl.app.run`` (the mmjax CLI,
    # pytest, notebooks) they are never parsed, and grain 0.2 reads one (e.g.
    # --grain_enable_multiprocess_worker_profiling) when the workers start, which raises
    # ``UnparsedFlagAccessError``. Marked as parsed, every flag reads its default;
    # programs that did parse their flags keep their values.
    if not flags.FLAGS.is_parsed():
        flags.FLAGS.mark_as_parsed()
    options = grain.MultiprocessingOptions(
        num_workers=num_workers, per_worker_buffer_size=per_worker_buffer_size
    )
    return ds.mp_prefetch(options)
