"""The data the source tests read: the synthetic shapes written once per session as every
source kind (TFDS, JSONL/CSV files, image folders, tar shards, prepared ArrayRecord), and
the config / iterator helpers the tests share (tests/test_sources*.py)."""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path

import ml_collections
import numpy as np
import pytest
from PIL import Image

from mmjax.data.prepare import prepare
from mmjax.data.synthetic import COMBINATIONS, TEMPLATES, SyntheticShapes
from mmjax.data.tokenizer import TextTokenizer

tfds_builder = pytest.importorskip("tests.tfds_builder")

N_TRAIN, N_EVAL, SIZE = 24, 8, 32
KINDS = ("tfds", "files", "folder", "wds", "arrayrecord")
TOKENIZER = TextTokenizer.synthetic(12)


def _png(image: np.ndarray, fmt: str = "PNG") -> bytes:
    buf = io.BytesIO()
    Image.fromarray(image).save(buf, format=fmt, **({"quality": 95} if fmt == "JPEG" else {}))
    return buf.getvalue()


def _records(split: str, n: int) -> list[dict]:
    """Synthetic shapes as raw data: an image 40 x (36..40) (sizes differ, as real images
    do), two captions (the record's own and the first template) and its class label."""
    shapes = SyntheticShapes(split, num_records=n, image_size=40, seed=0)
    out = []
    for i in range(n):
        r = shapes[i]
        shape, colour, size, where = COMBINATIONS[r["label"]]
        other = TEMPLATES[0].format(shape=shape, colour=colour, size=size, where=where)
        image = np.ascontiguousarray(r["image"][:, : 36 + i % 5])
        out.append(
            dict(image=image, png=_png(image), captions=[r["caption"], other], label=r["label"])
        )
    return out


def _tar(path: Path, members: list[tuple[str, bytes]]) -> None:
    with tarfile.open(path, "w") as tar:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))


_WRITTEN: dict[str, dict] = {}


def source_data(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """``{'root', 'splits'}``: every source kind over the same records, written once for
    the session; a test file's fixture is ``data = pytest.fixture(source_data)``."""
    if "data" not in _WRITTEN:
        _WRITTEN["data"] = _write(tmp_path_factory.mktemp("sources"))
    return _WRITTEN["data"]


def _write(root: Path) -> dict:
    splits = {"train": _records("train", N_TRAIN), "eval": _records("eval", N_EVAL)}
    (root / "files" / "images").mkdir(parents=True)
    for split, records in splits.items():
        rows = []
        for i, r in enumerate(records):
            name = f"images/{split}_{i}.jpg"
            (root / "files" / name).write_bytes(_png(r["image"], "JPEG"))
            rows.append({"image": name, "captions": r["captions"], "label": r["label"]})
            shape = COMBINATIONS[r["label"]][0]
            folder = root / "folder" / split / shape
            folder.mkdir(parents=True, exist_ok=True)
            (folder / f"{i:03d}.png").write_bytes(r["png"])
        (root / "files" / f"{split}.jsonl").write_text("".join(json.dumps(x) + "\n" for x in rows))
        # Tar shards: 6 samples each; json metadata, except plain txt captions in shard 1.
        (root / "wds").mkdir(exist_ok=True)
        for s in range(0, len(records), 6):
            members = []
            for i in range(s, min(s + 6, len(records))):
                r, key = records[i], f"{split}{i:04d}"
                if s // 6 == 1:
                    meta = [(f"{key}.txt", r["captions"][0].encode())]
                else:
                    meta = [(f"{key}.json", json.dumps(dict(captions=r["captions"])).encode())]
                members += [(f"{key}.png", r["png"]), *meta, (f"{key}.cls", b"%d" % r["label"])]
            _tar(root / "wds" / f"{split}-{s // 6:03d}.tar", members)
    # The CSV twin of train.jsonl: one caption, labels as class names.
    with (root / "files" / "train.csv").open("w") as f:
        f.write("image,caption,label\n")
        for i, r in enumerate(splits["train"]):
            f.write(f'images/train_{i}.jpg,"{r["captions"][0]}",{COMBINATIONS[r["label"]][0]}\n')
    tfds_builder.build_tfds(root / "tfds", {"train": splits["train"], "test": splits["eval"]})
    prepare(f"files:{root / 'files' / 'train.jsonl'}", root / "prepared", 10, progress=False)
    prepare(f"files:{root / 'files' / 'eval.jsonl'}", root / "prepared_eval", 10, progress=False)
    return dict(root=root, splits=splits)


def specs(root: Path) -> dict[str, tuple[str, str]]:
    """(train source, eval source) per kind."""
    return {
        "tfds": (f"tfds:{tfds_builder.NAME}", f"tfds:{tfds_builder.NAME}:test"),
        "files": (f"files:{root}/files/train.jsonl", f"files:{root}/files/eval.jsonl"),
        "folder": (f"folder:{root}/folder/train", f"folder:{root}/folder/eval"),
        "wds": (f"wds:{root}/wds/train-{{000..003}}.tar", f"wds:{root}/wds/eval-{{000..001}}.tar"),
        "arrayrecord": (f"arrayrecord:{root}/prepared", f"arrayrecord:{root}/prepared_eval"),
    }


def data_cfg(root: Path, kind: str, **kw) -> ml_collections.ConfigDict:
    train, evals = specs(root)[kind]
    base = dict(
        source=train,
        eval_source=evals,
        tfds_data_dir=str(root / "tfds"),
        fields=dict(image="", caption="captions/text", label=""),  # '' = the default
        image_size=SIZE,
        train_transform="random_resized_crop",
        crop_scale=(0.5, 1.0),
        eval_transform="resize_center_crop",
        caption_template="a {}",
        shuffle_buffer=8,
        num_threads=2,
        prefetch=2,
    )
    return ml_collections.ConfigDict({**base, **kw})


def take(it, n: int) -> list[dict]:
    return [{k: np.array(v) for k, v in next(it).items()} for _ in range(n)]


def same(a: list[dict], b: list[dict]) -> None:
    for x, y in zip(a, b, strict=True):
        assert x.keys() == y.keys()
        for k in x:
            np.testing.assert_array_equal(x[k], y[k], err_msg=k)
