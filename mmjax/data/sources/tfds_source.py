"""TFDS data sets through ``tfds.data_source``: random access to their ArrayRecord files.

``config.data.source = 'tfds:<name>[:<split>]'`` (``name`` may carry a config and a
version, ``coco_captions/2014:1.1.0``). Reading needs ``tensorflow-datasets`` and the
prepared data set under ``config.data.tfds_data_dir`` (``tfds build`` once, or
``data.tfds_download=True``); TensorFlow is not needed (it is used only by
``as_dataset``, which mmjax does not call). Images are read encoded and decoded by mmjax
(``decode_image``), so a corrupt image is a bad record like in every other source.
"""

from __future__ import annotations

import re
from typing import Any

from mmjax.data.sources.records import (
    DEFAULT_CAPTION_TEMPLATE,
    SourceError,
    finalize,
    get_field,
    text,
    texts,
)

# Field mappings of common data sets (config.data.fields overrides them key by key).
# Any other data set: classification-style ``image`` + ``label`` (class name as caption).
DEFAULT_FIELDS: dict[str, dict[str, str]] = {
    "coco_captions": dict(image="image", caption="captions/text"),
    "cifar10": dict(image="image", label="label"),
    "cifar100": dict(image="image", label="label"),
    "imagenet2012": dict(image="image", label="label"),
}
GENERIC_FIELDS = dict(image="image", label="label")
TEXT_FIELDS = ("caption", "question", "answer", "answers")  # decoded to str / list[str]
EVAL_SPLITS = ("validation", "val", "test")  # tried in order when data.eval_split is ''
# name[/config][:x.y.z version][:split]; split specs have colons of their own (train[:90%]).
_SPEC = re.compile(r"^(?P<name>[^:]+(?::[\d*]+\.[\d*]+\.[\d*]+)?)(?::(?P<split>.+))?$")


def parse_tfds_spec(arg: str) -> tuple[str, str]:
    """``'coco_captions/2014:1.1.0:train[:90%]'`` -> ``('coco_captions/2014:1.1.0',
    'train[:90%]')``; the split is ``''`` when absent."""
    match = _SPEC.match(arg)
    if match is None:
        raise SourceError(f"config.data.source tfds:{arg}: expected tfds:NAME[:VERSION][:SPLIT]")
    return match["name"], match["split"] or ""


def fields_for(name: str, configured: Any) -> dict[str, str]:
    """The data set's default fields updated with the non-empty ``config.data.fields``."""
    base = name.split("/")[0].split(":")[0]
    fields = dict(DEFAULT_FIELDS.get(base, GENERIC_FIELDS))
    fields.update({k: str(v) for k, v in dict(configured or {}).items() if v})
    if "image" not in fields:
        raise SourceError(f"config.data.fields: tfds:{name} needs an image field")
    return fields


class TfdsSource:
    """Random access to a TFDS split: ``len``, ``source[i] -> record`` (see records.py).

    ``fields`` maps record keys (``image``, ``caption``, ``label``, ...) to the data set's
    feature paths (``'captions/text'``); a ``ClassLabel`` label also gives ``label_name``.
    Picklable (grain worker processes reopen the data set).
    """

    def __init__(
        self,
        name: str,
        split: str,
        data_dir: str | None = None,
        fields: dict[str, str] | None = None,
        download: bool = False,
        template: str = DEFAULT_CAPTION_TEMPLATE,
    ):
        self.name, self.split, self.data_dir = name, split, data_dir or None
        self.fields = fields or fields_for(name, None)
        self.download, self.template = download, template
        self._source = None
        if len(self):  # a wrong field mapping fails here, naming the fields there are
            self.raw(0)

    def __getstate__(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if k != "_source"} | {"_source": None}

    @property
    def data_source(self) -> Any:
        if self._source is None:
            self._source = open_tfds(
                self.name, self.split, self.data_dir, self.download, self.fields["image"]
            )
        return self._source

    def __len__(self) -> int:
        return len(self.data_source)

    def __repr__(self) -> str:
        return f"TfdsSource({self.name!r}, split={self.split!r})"

    def label_names(self) -> list[str] | None:
        """Class names of a ``ClassLabel`` label feature, else ``None``."""
        path = self.fields.get("label")
        if not path:
            return None
        feature: Any = self.data_source.dataset_info.features
        try:
            for part in path.split("/"):
                feature = feature[part]
        except (KeyError, TypeError):
            return None
        return list(feature.names) if hasattr(feature, "names") else None

    def num_captions(self, index: int) -> int:
        """Captions of record ``index`` (eval rows); without a caption field, one (the class
        name), so classification sets are not read just to count."""
        if "caption" not in self.fields:
            return 1
        return len(texts(get_field(self.data_source[index], self.fields["caption"], "caption", "")))

    def raw(self, index: int) -> dict[str, Any]:
        """Record ``index`` as stored (no caption from the class name yet)."""
        item = self.data_source[index]
        where = f"record {index} of tfds:{self.name} split {self.split!r}"
        record: dict[str, Any] = {"key": f"tfds:{self.name}/{self.split}/{index}"}
        for key, path in self.fields.items():
            value = get_field(item, path, key, where)
            if key == "caption":  # one text or several; finalize() makes one a caption
                record["captions"] = texts(value)
            elif key == "answers":
                record[key] = texts(value)
            elif key in TEXT_FIELDS:
                record[key] = text(value)
            elif key == "label":
                record[key] = int(value)
            else:
                record[key] = value
        if "label" in record and "label_name" not in record:
            names = self._names()
            if names is not None and 0 <= record["label"] < len(names):
                record["label_name"] = names[record["label"]]
        return record

    def _names(self) -> list[str] | None:
        if not hasattr(self, "_label_names"):
            self._label_names = self.label_names()
        return self._label_names

    def __getitem__(self, index: int) -> dict[str, Any]:
        return finalize(self.raw(int(index)), self.template)


def open_tfds(name: str, split: str, data_dir: str | None, download: bool, image_path: str):
    """``tfds.data_source`` with the image feature left encoded; errors name the config keys."""
    try:
        import tensorflow_datasets as tfds
    except ImportError:
        raise SourceError(
            f"config.data.source tfds:{name} needs tensorflow-datasets: pip install 'mmjax[tfds]'"
        ) from None
    decoders: Any = tfds.decode.SkipDecoding()
    for part in reversed(image_path.split("/")):
        decoders = {part: decoders}
    try:
        return tfds.data_source(
            name, split=split, data_dir=data_dir, download=download, decoders=decoders
        )
    except Exception as e:  # noqa: BLE001 - tfds raises many kinds; all mean "not readable"
        hint = (
            "build it once (`tfds build NAME --data_dir DIR --file_format array_record`) "
            "or set config.data.tfds_download=True"
        )
        raise SourceError(
            f"config.data.source tfds:{name} (split {split!r}, config.data.tfds_data_dir="
            f"{data_dir!r}) cannot be read: {type(e).__name__}: {e}. {hint}"
        ) from e


def default_eval_split(name: str, data_dir: str | None) -> str:
    """The first of ``EVAL_SPLITS`` the data set has (``data.eval_split=''``)."""
    import tensorflow_datasets as tfds

    try:
        splits = set(tfds.builder(name, data_dir=data_dir).info.splits)
    except Exception as e:  # noqa: BLE001
        raise SourceError(
            f"config.data.eval_split: cannot list the splits of tfds:{name} "
            f"({type(e).__name__}: {e}); set config.data.eval_split"
        ) from e
    for split in EVAL_SPLITS:
        if split in splits:
            return split
    raise SourceError(
        f"config.data.eval_split: tfds:{name} has none of {EVAL_SPLITS} (its splits: "
        f"{sorted(splits)}); set config.data.eval_split or config.data.eval_source"
    )
