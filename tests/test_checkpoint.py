"""Checkpoint retention: recent, every k-th forever, best by an eval metric."""

from __future__ import annotations

import jax.numpy as jnp
import pytest

from mmjax.train.checkpoint import BestCheckpointer, Checkpointer


def _steps(directory) -> list[int]:
    return sorted(int(p.name) for p in directory.iterdir() if p.name.isdigit())


def test_best_checkpoints_keep_the_top_k(tmp_path):
    best = BestCheckpointer(tmp_path / "best", "eval/i2t_r1", keep=2)
    for step, r1 in [(1, 0.2), (2, 0.5), (3, 0.1), (4, 0.4)]:
        best.save(step, {"w": jnp.full((3,), float(step))}, {"eval/i2t_r1": r1, "other": 0.0})
    best.close()
    assert _steps(tmp_path / "best") == [2, 4]
    assert best.best_step() == 2
    with pytest.raises(KeyError, match="not among the eval metrics"):
        BestCheckpointer(tmp_path / "b2", "eval/nope").save(1, {"w": jnp.ones(1)}, {"a": 1.0})


def test_keep_period_keeps_every_kth_step(tmp_path):
    import grain

    ckpt = Checkpointer(tmp_path / "ckpt", max_to_keep=1, keep_period=3)
    it = iter(grain.MapDataset.range(100).to_iter_dataset())
    for step in range(1, 8):
        next(it)
        ckpt.save(step, {"w": jnp.full((2,), float(step))}, it, "{}")
    ckpt.close()
    assert _steps(tmp_path / "ckpt") == [3, 6, 7]
    assert ckpt.has_data_state(7) and not ckpt.has_data_state(5)
