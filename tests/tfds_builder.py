"""A small TFDS data set built locally for the tests: no download, no TensorFlow.

``MmjaxTestShapes`` writes the records it is given (PNG bytes, several captions, a class
label) as ArrayRecord files, the format ``tfds.data_source`` reads by index:

    build_tfds(data_dir, {'train': records, 'test': records})
    tfds.data_source('mmjax_test_shapes', split='train', data_dir=data_dir)
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import tensorflow_datasets as tfds

from mmjax.data.synthetic import COMBINATIONS

NAME = "mmjax_test_shapes"
NUM_CLASSES = len(COMBINATIONS)  # labels are indices into the synthetic combinations


class MmjaxTestShapes(tfds.core.GeneratorBasedBuilder):
    """Records ``{'image': PNG bytes, 'captions': {'text': [str, ...]}, 'label': int}``."""

    VERSION = tfds.core.Version("1.0.0")
    # No code directory: tfds would look for checksum files beside this module (and, for
    # a module inside a package, import importlib_resources, which it does not require).
    code_path = None
    SPLITS: dict[str, list[dict[str, Any]]] = {}  # set by build_tfds before preparing

    def _info(self) -> tfds.core.DatasetInfo:
        # DatasetInfo directly: dataset_info_from_configs wants a package directory.
        return tfds.core.DatasetInfo(
            builder=self,
            features=tfds.features.FeaturesDict(
                {
                    "image": tfds.features.Image(shape=(None, None, 3), encoding_format="png"),
                    "captions": tfds.features.Sequence({"text": tfds.features.Text()}),
                    "label": tfds.features.ClassLabel(num_classes=NUM_CLASSES),
                }
            ),
        )

    def _split_generators(self, dl_manager: Any) -> dict[str, Any]:
        del dl_manager  # nothing to download
        return {split: self._generate_examples(records) for split, records in self.SPLITS.items()}

    def _generate_examples(self, records: list[dict[str, Any]]):
        # PNG bytes pass through unchanged (a numpy image would need TensorFlow to encode).
        for i, r in enumerate(records):
            yield i, {"image": r["png"], "captions": {"text": r["captions"]}, "label": r["label"]}


def build_tfds(data_dir: Path, splits: dict[str, list[dict[str, Any]]]) -> None:
    """Prepares ``MmjaxTestShapes`` with ``splits`` (records with ``png``, ``captions``,
    ``label``) under ``data_dir`` as ArrayRecord."""
    MmjaxTestShapes.SPLITS = splits
    builder = MmjaxTestShapes(data_dir=str(data_dir), file_format="array_record")
    builder.download_and_prepare(download_config=tfds.download.DownloadConfig())
