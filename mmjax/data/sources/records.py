"""The record every source returns, and the helpers that read and complete it.

A source record is a dict with (all but ``image`` optional):

    image       encoded bytes (JPEG, PNG, ...) or a uint8 array; ``None`` when unreadable
    caption     one caption (str)
    captions    several captions (list[str]); training samples one per image per epoch,
                eval keeps every one as its own (image, caption) row
    label       int class index;  label_name: its class name
    question, answer, answers      for VQA-style data
    key         where the record came from (a file path, a shard member), for messages

Sources return records as read (``raw``) and complete them with ``finalize``: a record
with a class name but no caption gets ``data.caption_template`` filled with that name.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from mmjax.data.transforms import BadRecord

DEFAULT_CAPTION_TEMPLATE = "a photo of a {}."


class SourceError(ValueError):
    """A source that cannot be read as configured (a missing field, file or data set); the
    message names the config key and the file / record."""


def text(value: Any) -> str:
    """A text field (str, UTF-8 bytes or a 0-d array of either) as str."""
    if isinstance(value, np.ndarray) and value.ndim == 0:
        value = value.item()
    if isinstance(value, (bytes, bytearray)):
        return bytes(value).decode("utf-8", errors="replace")
    return str(value)


def texts(value: Any) -> list[str]:
    """A text field that may hold one text or a sequence of them, as a list of str."""
    if isinstance(value, (str, bytes, bytearray)) or (
        isinstance(value, np.ndarray) and value.ndim == 0
    ):
        return [text(value)]
    return [text(v) for v in value]


def get_field(record: dict[str, Any], path: str, key: str, where: str) -> Any:
    """``record``'s value at ``path`` (``'captions/text'`` walks nested dicts; a key that
    itself holds ``/``, such as TFDS's ``'image/id'``, is matched whole first).

    A missing field raises ``SourceError`` naming the config key ``key`` and the record's
    keys.
    """
    node: Any = record
    rest = path
    while rest:
        if isinstance(node, dict) and rest in node:
            return node[rest]
        head, sep, tail = rest.partition("/")
        if not sep or not isinstance(node, dict) or head not in node:
            keys = sorted(_flat_keys(record))
            raise SourceError(
                f"config.data.fields.{key}={path!r}: no such field in {where}; "
                f"the record's fields are {keys}"
            )
        node, rest = node[head], tail
    return node


def _flat_keys(record: dict[str, Any], prefix: str = "") -> list[str]:
    keys = []
    for k, v in record.items():
        keys.append(prefix + k)
        if isinstance(v, dict):
            keys.extend(_flat_keys(v, prefix + k + "/"))
    return keys


def finalize(record: dict[str, Any], template: str) -> dict[str, Any]:
    """A caption from the class name when the record has none (``template.format(name)``,
    underscores read as spaces); a one-element ``captions`` list becomes ``caption``."""
    captions = record.get("captions")
    if captions is not None and len(captions) == 1 and "caption" not in record:
        record = {k: v for k, v in record.items() if k != "captions"}
        record["caption"] = captions[0]
    if "caption" not in record and "captions" not in record and "label_name" in record:
        record = dict(record, caption=template.format(record["label_name"].replace("_", " ")))
    return record


def record_captions(record: dict[str, Any]) -> list[str]:
    """All captions of a finalized record (``[]`` when it has none)."""
    if record.get("captions") is not None:
        return list(record["captions"])
    return [record["caption"]] if "caption" in record else []


def with_caption(record: dict[str, Any], caption: str) -> dict[str, Any]:
    """``record`` with ``caption`` as its one caption (what an example reads)."""
    out = {k: v for k, v in record.items() if k != "captions"}
    out["caption"] = caption
    return out


def sample_caption(record: dict[str, Any], rng: np.random.Generator) -> dict[str, Any]:
    """Training: one of a multi-caption record's captions, drawn from ``rng``; records with
    one caption (or none) are returned as they are."""
    captions = record.get("captions")
    if captions is None:
        return record
    if len(captions) == 0:
        raise BadRecord("empty captions list")
    return with_caption(record, captions[int(rng.integers(len(captions)))])


def class_index(names: Sequence[str]) -> dict[str, int]:
    """Class name -> label index, names sorted (the image-folder / torchvision order)."""
    return {name: i for i, name in enumerate(sorted(set(names)))}
