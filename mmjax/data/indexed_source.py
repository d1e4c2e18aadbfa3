"""The shared skeleton of the built-in generators (moving shapes, sounds, sentiment
posts): records drawn from ``(seed, split, index)``, so any record can be made again in
any order, by any worker, after any resume."""

from __future__ import annotations

from typing import Any

import numpy as np

from mmjax.data.synthetic import SPLITS


class IndexedSource:
    """A grain ``RandomAccessDataSource`` whose record ``i`` is a pure function of
    ``(seed, split, i)``.

    ``num_labels`` > 0: the ``eval`` split enumerates the labels (attribute combinations)
    once each in a fixed permuted order (at most ``num_labels`` records), ``train`` draws
    them at random. Subclasses set ``salt`` (their own random stream), ``order_salt`` (the
    eval permutation's) and ``repr_fields``, and build a record in ``__getitem__`` from
    ``self.record_rng(index)`` and ``self.label(index, rng)``.
    """

    salt: int = 0
    order_salt: int = 0
    repr_fields: tuple[str, ...] = ()

    def __init__(self, split: str, num_records: int, seed: int, num_labels: int = 0):
        if split not in SPLITS:
            raise ValueError(f"unknown split {split!r}; known: {sorted(SPLITS)}")
        if num_labels and split == "eval" and num_records > num_labels:
            raise ValueError(
                f"the eval split has at most {num_labels} distinct captions; "
                f"asked for {num_records}"
            )
        self.split, self.num_records, self.seed = split, num_records, seed
        self.num_labels = num_labels
        if num_labels:
            self._eval_order = np.random.default_rng([seed, self.order_salt]).permutation(
                num_labels
            )

    def __len__(self) -> int:
        return self.num_records

    def __repr__(self) -> str:
        fields = "".join(f", {f}={getattr(self, f)}" for f in self.repr_fields)
        return (
            f"{type(self).__name__}(split={self.split!r}, num_records={self.num_records}"
            f"{fields}, seed={self.seed})"
        )

    def num_captions(self, index: int) -> int:
        return 1

    def record_rng(self, index: int) -> np.random.Generator:
        """Record ``index``'s generator; ``IndexError`` naming the source when out of range."""
        if not 0 <= index < self.num_records:
            raise IndexError(f"record {index} is out of range for {self!r}")
        return np.random.default_rng([self.seed, SPLITS[self.split], index, self.salt])

    def label(self, index: int, rng: np.random.Generator) -> int:
        """Record ``index``'s label: the eval permutation's entry, or a draw from ``rng``."""
        if self.split == "eval":
            return int(self._eval_order[index])
        return int(rng.integers(self.num_labels))

    def __getitem__(self, index: int) -> dict[str, Any]:
        raise NotImplementedError
