"""Helpers for the Hugging Face tests: fixture paths, inputs, transformers references."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "hf"


def require_transformers():
    """Skips unless torch and transformers (the ``[test]`` extra) are installed."""
    pytest.importorskip("torch")
    return pytest.importorskip("transformers")


def images(n: int = 2, size: int = 24, seed: int = 0) -> np.ndarray:
    """Normalized-looking NHWC float32 images."""
    return np.random.default_rng(seed).normal(size=(n, size, size, 3)).astype(np.float32)


def text_batch(vocab: int = 64, seq: int = 10, eos: int | None = None, seed: int = 0):
    """``(ids [2, seq] int32, mask [2, seq] int32)``: right-padded, lengths 10 and 6; with
    ``eos`` the last real token of each row is ``eos`` (CLIP pools there)."""
    rng = np.random.default_rng(seed)
    ids = rng.integers(1, vocab - 2, size=(2, seq)).astype(np.int32)
    mask = np.ones((2, seq), np.int32)
    mask[1, 6:] = 0
    ids[1, 6:] = 0
    if eos is not None:
        ids[0, -1] = eos
        ids[1, 5] = eos
    return ids, mask


def torch_model(cls_name: str, directory: Path):
    transformers = require_transformers()
    return getattr(transformers, cls_name).from_pretrained(directory).eval()


def to_torch(x: np.ndarray, nchw: bool = False):
    import torch

    x = np.asarray(x)
    return torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2) if nchw else x))


def write_random_checkpoint(directory: Path, cls: str, config_cls: str, config: dict) -> None:
    """``save_pretrained`` of transformers' ``cls`` built from ``config_cls(**config)`` with
    every parameter redrawn from N(0, 0.5^2) (seed 0): zero-initialized tables and tokens
    would hide a wrong index or layout."""
    transformers = require_transformers()
    import torch

    model = getattr(transformers, cls)(getattr(transformers, config_cls)(**config)).eval()
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(0.5 * torch.randn(p.shape, generator=gen))
    model.save_pretrained(directory)


def assert_same_state_dict(before: dict, after: dict, skip: tuple[str, ...] = ()) -> None:
    """Two torch ``state_dict``s hold the same keys and bit-identical tensors (keys ending
    in one of ``skip`` are not compared)."""
    assert before.keys() == after.keys()
    for key, value in before.items():
        if not (skip and key.endswith(skip)):
            np.testing.assert_array_equal(after[key].numpy(), value.numpy(), err_msg=key)


def save_roundtrip(cls_name: str, checkpoint: Path, out: Path, skip: tuple[str, ...]):
    """Loads the transformers ``checkpoint`` into mmjax and saves it to ``out``; checks that
    the saved ``config.json`` names ``cls_name`` and that transformers reads back the same
    state dict (keys ending in one of ``skip`` not compared). Returns the ``original`` and
    ``reloaded`` torch models and the mmjax module."""
    import mmjax.hf

    original = torch_model(cls_name, checkpoint)
    module, variables = mmjax.hf.load(checkpoint)
    mmjax.hf.save(out, module, variables)
    assert json.loads((out / "config.json").read_text())["architectures"] == [cls_name]
    reloaded = torch_model(cls_name, out)
    assert_same_state_dict(original.state_dict(), reloaded.state_dict(), skip)
    return original, reloaded, module


def max_diff(a, b) -> float:
    a = a.detach().numpy() if hasattr(a, "detach") else np.asarray(a)
    return float(np.max(np.abs(np.asarray(a, np.float64) - np.asarray(b, np.float64))))
