"""Data sources named by ``config.data.source`` (training) and ``config.data.eval_source``.

    synthetic                          the built-in shapes (mmjax/data/synthetic.py)
    tfds:<name>[:<split>]              a prepared TFDS data set (tfds_source.py)
    files:<captions.jsonl | .csv>      image paths + captions (files_source.py)
    folder:<root>                      root/<class>/<image> classification (image_folder.py)
    wds:<shards-{000..127}.tar>        tar shards, streamed (wds_source.py)
    arrayrecord:<dir or glob>          the output of ``mmjax data prepare`` (arrayrecord_source.py)
    generated:<name>                   built-in video / audio / sentiment data (data/generated.py)

A spec is ``KIND:ARG``; each kind is an opener ``(arg, data_cfg, split) -> source``
registered with ``@register_source('kind')`` (the openers below import their modules
lazily, so ``import mmjax`` stays light). A source has ``len`` and ``source[i] -> record``
(a dict: ``image`` array or encoded bytes, ``caption`` or ``captions``, optional ``label``;
records.py); the eval split of ``wds:`` shards is read into memory (``WdsListSource``), the
training split streamed by the pipeline. A new source is one opener + its registration.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

from mmjax.data.sources.records import DEFAULT_CAPTION_TEMPLATE, SourceError
from mmjax.registry import Registry

Opener = Callable[[str, Any, str], Any]


@dataclasses.dataclass(frozen=True)
class SourceKind:
    """A registered source kind: its opener ``(arg, data_cfg, split) -> source`` and
    whether the spec needs an ``:ARG``, the kind serves an eval split of its own (read
    when ``config.data.eval_source`` is empty), and its records are the built-in shapes
    (``shapes_world``: a record's ``label`` indexes ``synthetic.COMBINATIONS``, so tasks can
    derive answers, references and zero-shot classes from it)."""

    open: Opener
    needs_arg: bool = True
    own_eval_split: bool = False
    shapes_world: bool = False


SOURCES: Registry[SourceKind] = Registry("data source")


def register_source(
    name: str, *, needs_arg: bool = True, own_eval_split: bool = False, shapes_world: bool = False
) -> Callable[[Opener], Opener]:
    """Decorator: ``config.data.source = 'name:ARG'`` opens ``opener(ARG, data_cfg, split)``
    (``split`` is ``'train'`` or ``'eval'``); returns the opener unchanged."""

    def add(opener: Opener) -> Opener:
        SOURCES.register(name)(SourceKind(opener, needs_arg, own_eval_split, shapes_world))
        return opener

    return add


def parse_spec(spec: str, key: str = "config.data.source") -> tuple[str, str]:
    """``'files:/data/caps.jsonl'`` -> ``('files', '/data/caps.jsonl')``; ``'synthetic'`` ->
    ``('synthetic', '')``."""
    kind, _, arg = str(spec).partition(":")
    if kind not in SOURCES or (SOURCES.get(kind).needs_arg and not arg):
        known = [n if not SOURCES.get(n).needs_arg else f"{n}:..." for n in SOURCES.names()]
        raise SourceError(
            f"{key}: unknown source {spec!r}; known: " + ", ".join(f"'{k}'" for k in known)
        )
    return kind, arg


def source_spec(data_cfg: Any, split: str) -> str:
    """The source spec of ``split`` (``'train'`` | ``'eval'``): ``data.source``, or for eval
    ``data.eval_source`` when set, else the same source when it has an eval split of its own
    (synthetic, TFDS reading ``data.eval_split``, generated). Others have none."""
    if split == "train":
        return data_cfg.source
    eval_source = data_cfg.get("eval_source", "") or ""
    if eval_source:
        return eval_source
    kind, _ = parse_spec(data_cfg.source)
    if SOURCES.get(kind).own_eval_split:
        return data_cfg.source
    raise SourceError(
        f"config.data.eval_source: the training source {data_cfg.source!r} has no eval "
        "split; set config.data.eval_source (e.g. 'files:/data/val.jsonl')"
    )


def is_shapes_world(data_cfg: Any, split: str) -> bool:
    """Whether ``split``'s records (``source_spec``) are the built-in shapes, whose labels
    index ``synthetic.COMBINATIONS`` (``SourceKind.shapes_world``). An eval split with no
    ``data.eval_source`` is the training source's own (or none: then nothing reads it)."""
    spec = (data_cfg.get("eval_source", "") or "") if split == "eval" else ""
    return SOURCES.get(parse_spec(spec or data_cfg.source)[0]).shapes_world


def template(data_cfg: Any) -> str:
    """``data.caption_template``: how a class name becomes a caption (one ``{}`` slot)."""
    text = data_cfg.get("caption_template", DEFAULT_CAPTION_TEMPLATE) or "{}"
    if text.count("{}") != 1:
        raise SourceError(f"config.data.caption_template {text!r} needs exactly one '{{}}'")
    return text


def tfds_split(data_cfg: Any, name: str, spec_split: str, split: str) -> str:
    """The TFDS split to read: the spec's own, else ``data.train_split`` /
    ``data.eval_split`` (``''``: the data set's validation / val / test split)."""
    from mmjax.data.sources.tfds_source import default_eval_split

    if spec_split and (split == "train" or data_cfg.get("eval_source", "")):
        return spec_split
    if split == "train":
        return data_cfg.get("train_split", "train") or "train"
    eval_split = data_cfg.get("eval_split", "") or ""
    return eval_split or default_eval_split(name, data_cfg.get("tfds_data_dir", "") or None)


def open_source(spec: str, data_cfg: Any, split: str = "train") -> Any:
    """The random-access ``split`` source of ``spec`` (a ``wds:`` training split is
    streamed by the pipeline instead)."""
    kind, arg = parse_spec(spec)
    return SOURCES.get(kind).open(arg, data_cfg, split)


# -- the shipped kinds ------------------------------------------------------------------------


@register_source("synthetic", needs_arg=False, own_eval_split=True, shapes_world=True)
def open_synthetic(arg: str, data_cfg: Any, split: str) -> Any:
    """The built-in shapes: ``data.train_records`` / ``data.eval_records`` records of
    ``data.image_size`` from ``data.synthetic_seed`` (training records corrupted at
    ``data.synthetic_corrupt_fraction``)."""
    from mmjax.data.synthetic import SyntheticShapes

    num = data_cfg.train_records if split == "train" else data_cfg.eval_records
    corrupt = float(data_cfg.get("synthetic_corrupt_fraction", 0.0) or 0.0)
    return SyntheticShapes(
        split,
        num_records=num,
        image_size=data_cfg.image_size,
        seed=data_cfg.synthetic_seed,
        corrupt_fraction=corrupt if split == "train" else 0.0,
    )


@register_source("tfds", own_eval_split=True)
def open_tfds(arg: str, data_cfg: Any, split: str) -> Any:
    from mmjax.data.sources.tfds_source import TfdsSource, fields_for, parse_tfds_spec

    name, spec_split = parse_tfds_spec(arg)
    return TfdsSource(
        name,
        tfds_split(data_cfg, name, spec_split, split),
        data_dir=data_cfg.get("tfds_data_dir", "") or None,
        fields=fields_for(name, data_cfg.get("fields")),
        download=bool(data_cfg.get("tfds_download", False)),
        template=template(data_cfg),
    )


@register_source("files")
def open_files(arg: str, data_cfg: Any, split: str) -> Any:
    from mmjax.data.sources.files_source import FilesSource

    return FilesSource(arg, template(data_cfg), bool(data_cfg.get("allow_outside_root", False)))


@register_source("folder")
def open_folder(arg: str, data_cfg: Any, split: str) -> Any:
    from mmjax.data.sources.image_folder import ImageFolderSource

    return ImageFolderSource(arg, template(data_cfg))


@register_source("wds")
def open_wds(arg: str, data_cfg: Any, split: str) -> Any:
    from mmjax.data.sources.wds_source import WdsListSource

    return WdsListSource(arg, template(data_cfg))


@register_source("arrayrecord")
def open_arrayrecord(arg: str, data_cfg: Any, split: str) -> Any:
    from mmjax.data.sources.arrayrecord_source import ArrayRecordSource

    return ArrayRecordSource(arg, template(data_cfg))


@register_source("generated", own_eval_split=True)
def open_generated(arg: str, data_cfg: Any, split: str) -> Any:
    from mmjax.data.generated import open_generated as open_set

    return open_set(arg, data_cfg, split)
