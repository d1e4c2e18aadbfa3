"""The shared skeleton of the built-in generators (shapes, moving shapes, sounds,
sentiment posts): records drawn from ``(seed, split, index)``, so any record can be made
again in any order, by any worker, after any resume."""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np

# The random stream of each split (part of every record's seed).
SPLITS = {"train": 0, "eval": 1}


class IndexedSource:
    """A grain ``RandomAccessDataSource`` whose record ``i`` is a pure function of
    ``(seed, split, i)``: ``Source(split, num_records, seed=..., **options)``.

    Subclasses declare their own keyword ``options`` with defaults (a table: each becomes an
    attribute and a ``repr`` field), check them in ``prepare``, set ``salt`` (their
    own random stream; ``None``: the key is ``(seed, split, index)`` alone) and build a
    record in ``__getitem__`` from ``self.record_rng(index)`` and ``self.label(index, rng)``.

    ``num_labels`` > 0: the ``eval`` split enumerates the labels (attribute combinations)
    once each in a fixed permuted order (seeded by ``order_salt``; at most ``num_labels``
    records), ``train`` draws them at random.
    """

    options: ClassVar[dict[str, Any]] = {}
    salt: ClassVar[int | None] = 0
    order_salt: ClassVar[int] = 0
    num_labels: ClassVar[int] = 0

    def __init__(
        self, split: str = "train", num_records: int = 100_000, *, seed: int = 0, **options: Any
    ):
        unknown = sorted(set(options) - set(self.options))
        if unknown:
            raise TypeError(
                f"{type(self).__name__}: unknown options {unknown}; known: {sorted(self.options)}"
            )
        if split not in SPLITS:
            raise ValueError(f"unknown split {split!r}; known: {sorted(SPLITS)}")
        if self.num_labels and split == "eval" and num_records > self.num_labels:
            raise ValueError(
                f"the eval split has at most {self.num_labels} distinct captions; "
                f"asked for {num_records}"
            )
        self.split, self.num_records, self.seed = split, num_records, seed
        for name, default in self.options.items():
            setattr(self, name, options.get(name, default))
        self.prepare()
        if self.num_labels:
            self._eval_order = np.random.default_rng([seed, self.order_salt]).permutation(
                self.num_labels
            )

    def prepare(self) -> None:
        """Check the options (``ValueError`` naming one out of range) and precompute what
        every record shares; subclasses override it."""

    def __len__(self) -> int:
        return self.num_records

    def __repr__(self) -> str:
        fields = "".join(f", {f}={getattr(self, f)}" for f in self.options)
        return (
            f"{type(self).__name__}(split={self.split!r}, num_records={self.num_records}"
            f"{fields}, seed={self.seed})"
        )

    def num_captions(self, index: int) -> int:
        """Every generated record has one caption (``eval_rows`` counts without reading)."""
        return 1

    def record_rng(self, index: int) -> np.random.Generator:
        """Record ``index``'s generator; ``IndexError`` naming the source when out of range."""
        if not 0 <= index < self.num_records:
            raise IndexError(f"record {index} is out of range for {self!r}")
        salt = () if self.salt is None else (self.salt,)
        return np.random.default_rng([self.seed, SPLITS[self.split], index, *salt])

    def label(self, index: int, rng: np.random.Generator) -> int:
        """Record ``index``'s label: the eval permutation's entry, or a draw from ``rng``."""
        if self.split == "eval":
            return int(self._eval_order[index])
        return int(rng.integers(self.num_labels))

    def __getitem__(self, index: int) -> dict[str, Any]:
        raise NotImplementedError


def pixel_grid(size: int) -> tuple[np.ndarray, np.ndarray]:
    """Pixel-centre coordinates ``(yy, xx)``, float32 ``[size, size]`` each."""
    grid = np.arange(size, dtype=np.float32) + 0.5
    return tuple(np.meshgrid(grid, grid, indexing="ij"))
