"""Data sources named by ``config.data.source`` (training) and ``config.data.eval_source``.

    synthetic                          the built-in shapes (mmjax/data/synthetic.py)
    tfds:<name>[:<split>]              a prepared TFDS data set (tfds_source.py)
    files:<captions.jsonl | .csv>      image paths + captions (files_source.py)
    folder:<root>                      root/<class>/<image> classification (image_folder.py)
    wds:<shards-{000..127}.tar>        tar shards, streamed (wds_source.py)
    arrayrecord:<dir or glob>          the output of ``mmjax data prepare`` (arrayrecord_source.py)
    generated:<name>                   built-in video / audio / sentiment data (data/generated.py)

Every random-access source has ``len`` and ``source[i] -> record`` (records.py); the
eval split of ``wds:`` shards is read into memory (``WdsListSource``).
"""

from __future__ import annotations

from typing import Any

from mmjax.data.sources.records import DEFAULT_CAPTION_TEMPLATE, SourceError

KINDS = ("synthetic", "tfds", "files", "folder", "wds", "arrayrecord", "generated")


def parse_spec(spec: str, key: str = "config.data.source") -> tuple[str, str]:
    """``'files:/data/caps.jsonl'`` -> ``('files', '/data/caps.jsonl')``."""
    if spec == "synthetic":
        return "synthetic", ""
    kind, sep, arg = str(spec).partition(":")
    if not sep or kind not in KINDS or not arg:
        raise SourceError(
            f"{key}: unknown source {spec!r}; known: 'synthetic', "
            + ", ".join(f"'{k}:...'" for k in KINDS[1:])
        )
    return kind, arg


def source_spec(data_cfg: Any, split: str) -> str:
    """The source spec of ``split`` (``'train'`` | ``'eval'``): ``data.source``, or for eval
    ``data.eval_source`` when set, else the same synthetic / TFDS source (TFDS reads
    ``data.eval_split``). Other sources have no eval split of their own."""
    if split == "train":
        return data_cfg.source
    eval_source = data_cfg.get("eval_source", "") or ""
    if eval_source:
        return eval_source
    kind, _ = parse_spec(data_cfg.source)
    if kind in ("synthetic", "tfds", "generated"):
        return data_cfg.source
    raise SourceError(
        f"config.data.eval_source: the training source {data_cfg.source!r} has no eval "
        "split; set config.data.eval_source (e.g. 'files:/data/val.jsonl')"
    )


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
    """The random-access source of ``spec`` (not ``synthetic``, which the pipeline builds)."""
    kind, arg = parse_spec(spec)
    if kind == "tfds":
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
    if kind == "files":
        from mmjax.data.sources.files_source import FilesSource

        return FilesSource(arg, template(data_cfg), bool(data_cfg.get("allow_outside_root", False)))
    if kind == "folder":
        from mmjax.data.sources.image_folder import ImageFolderSource

        return ImageFolderSource(arg, template(data_cfg))
    if kind == "wds":
        from mmjax.data.sources.wds_source import WdsListSource

        return WdsListSource(arg, template(data_cfg))
    if kind == "generated":
        from mmjax.data.generated import open_generated

        return open_generated(arg, data_cfg, split)
    if kind == "arrayrecord":
        from mmjax.data.sources.arrayrecord_source import ArrayRecordSource

        return ArrayRecordSource(arg, template(data_cfg))
    raise SourceError(f"config.data.source: {spec!r} is built by the pipeline, not opened here")
