"""Reading and writing Hugging Face weight files, as flat ``{torch-style key: np.ndarray}``.

``model.safetensors`` (PyTorch layout) is read as is. ``flax_model.msgpack`` (HF Flax
layout, read with ``flax.serialization``) is renamed to the PyTorch layout on read
(``kernel`` -> ``weight`` transposed, ``scale`` / ``embedding`` -> ``weight``, batch
``mean`` / ``var`` -> ``running_mean`` / ``running_var``), so one key table per
architecture serves both. Sharded checkpoints (``*.index.json`` with a ``weight_map``)
are read shard by shard. Pickle files (``pytorch_model.bin``) are refused.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

SAFETENSORS = "model.safetensors"
MSGPACK = "flax_model.msgpack"
PICKLES = ("pytorch_model.bin", "pytorch_model.bin.index.json", "tf_model.h5")


class WeightFileError(ValueError):
    """A weight file that is missing, refused or malformed; the message names it."""


def find_weights(directory: Path) -> Path:
    """The weight file (or index) to read in ``directory``: safetensors first, then msgpack."""
    for name in (SAFETENSORS, SAFETENSORS + ".index.json", MSGPACK, MSGPACK + ".index.json"):
        if (directory / name).is_file():
            return directory / name
    present = [name for name in PICKLES if (directory / name).is_file()]
    if present:
        raise WeightFileError(
            f"{directory / present[0]} is a pickle (or TF) checkpoint, which mmjax never loads "
            "(unpickling runs arbitrary code). Convert it to safetensors, e.g. "
            "`transformers.AutoModel.from_pretrained(DIR).save_pretrained(DIR, "
            "safe_serialization=True)`, or use the Hub's safetensors convert space."
        )
    raise WeightFileError(f"no {SAFETENSORS} or {MSGPACK} (or their .index.json) in {directory}")


def flax_to_torch_layout(flat: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """HF Flax keys/arrays (``a/b/kernel`` ``[in, out]``) -> PyTorch ones (``a.b.weight``
    ``[out, in]``; conv kernels ``[kh, kw, in, out]`` -> ``[out, in, kh, kw]``)."""
    out = {}
    for key, value in flat.items():
        *path, leaf = key.split("/")
        if leaf == "kernel":
            leaf = "weight"
            value = value.T if value.ndim == 2 else np.transpose(value, (3, 2, 0, 1))
        elif leaf in ("scale", "embedding"):
            leaf = "weight"
        elif leaf in ("mean", "var"):
            leaf = f"running_{leaf}"
        out[".".join([*path, leaf])] = value
    return out


def _flatten(tree: dict, prefix: str = "") -> dict[str, np.ndarray]:
    flat = {}
    for key, value in tree.items():
        path = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(_flatten(value, path + "/"))
        else:
            flat[path] = np.asarray(value)
    return flat


def _read_msgpack(path: Path) -> dict[str, np.ndarray]:
    from flax import serialization

    try:
        tree = serialization.msgpack_restore(path.read_bytes())
    except Exception as e:  # noqa: BLE001 - any decoding failure is a bad file
        raise WeightFileError(f"{path}: not a readable Flax msgpack file ({e})") from e
    if not isinstance(tree, dict):
        raise WeightFileError(f"{path}: expected a dict of params, got {type(tree).__name__}")
    if "params" in tree and set(tree) <= {"params", "batch_stats"}:  # a full variables dict
        flat = _flatten(tree["params"])
        flat.update(_flatten(tree.get("batch_stats", {})))
        return flax_to_torch_layout(flat)
    return flax_to_torch_layout(_flatten(tree))


def _read_safetensors(path: Path) -> dict[str, np.ndarray]:
    from safetensors import SafetensorError
    from safetensors.numpy import load_file

    try:
        return load_file(str(path))
    except (SafetensorError, OSError, TypeError) as e:
        raise WeightFileError(f"{path}: not a readable safetensors file ({e})") from e


def read_weights(path: Path) -> dict[str, np.ndarray]:
    """All tensors of a weight file or sharded index, as ``{torch-style key: array}``."""
    path = Path(path)
    if path.name.endswith(".index.json"):
        try:
            weight_map = json.loads(path.read_text())["weight_map"]
        except (json.JSONDecodeError, KeyError) as e:
            raise WeightFileError(f"{path}: not a checkpoint index with a weight_map ({e})") from e
        tensors: dict[str, np.ndarray] = {}
        for shard in weight_map.values():  # a hostile index must not name files elsewhere
            parts = os.path.normpath(shard).split(os.sep) if isinstance(shard, str) else [""]
            if not isinstance(shard, str) or os.path.isabs(shard) or parts[0] in ("..", ""):
                raise WeightFileError(f"{path} names shard {shard!r}, outside its directory")
        for shard in sorted(set(weight_map.values())):
            if not (path.parent / shard).is_file():
                raise WeightFileError(f"{path} names shard {shard}, which is not there")
            tensors.update(read_weights(path.parent / shard))
        return tensors
    if path.suffix == ".msgpack":
        return _read_msgpack(path)
    if path.suffix == ".safetensors":
        return _read_safetensors(path)
    raise WeightFileError(f"{path}: unknown weight format (want .safetensors or .msgpack)")


def write_safetensors(path: Path, tensors: dict[str, np.ndarray]) -> None:
    """Writes ``tensors`` (contiguous fp arrays) with the ``format: pt`` metadata transformers
    expects."""
    from safetensors.numpy import save_file

    save_file(
        {k: np.array(v, order="C") for k, v in tensors.items()},
        str(path),
        metadata={"format": "pt"},
    )
