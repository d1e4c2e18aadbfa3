"""Real-data sources (TFDS, JSONL/CSV files, image folders, tar shards, prepared ArrayRecord):
reading, multi-caption eval rows, exact resumption for every source and
``mmjax data prepare``. Bad records, config errors and training on each source:
test_sources_train.py. The data: tests/source_data.py.
"""

from __future__ import annotations

import io
import json

import ml_collections
import numpy as np
import pytest
from PIL import Image

from mmjax.data import sources
from mmjax.data.pipeline import eval_batches, train_dataset
from mmjax.data.prepare import prepare
from mmjax.data.sources.arrayrecord_source import ArrayRecordSource
from mmjax.data.sources.files_source import FilesSource
from mmjax.data.sources.image_folder import ImageFolderSource
from mmjax.data.sources.records import SourceError
from mmjax.data.sources.tfds_source import TfdsSource, parse_tfds_spec
from mmjax.data.sources.wds_source import WdsListSource, expand_braces, read_shard
from mmjax.data.synthetic import COMBINATIONS
from tests.source_data import (  # importing it skips without tensorflow-datasets
    KINDS,
    N_EVAL,
    N_TRAIN,
    SIZE,
    TOKENIZER,
    data_cfg,
    same,
    source_data,
    take,
    tfds_builder,
)

data = pytest.fixture(source_data)  # the sources, written once per session


@pytest.mark.parametrize("kind", KINDS)
def test_resume_mid_epoch_reproduces_the_next_batches(data, kind):
    """For every source: the iterator state after 2 batches (through JSON, as checkpoints
    store it) gives exactly batches 3-5 again; 5 batches of 8 cross an epoch of 24."""
    cfg = data_cfg(data["root"], kind)
    it = iter(train_dataset(cfg, TOKENIZER, 8, seed=1))
    first = take(it, 2)
    state = json.loads(json.dumps(it.get_state()))
    rest = take(it, 3)
    assert first[0]["image"].shape == (8, SIZE, SIZE, 3) and first[0]["image"].dtype == np.uint8
    assert first[0]["tokens"].shape == (8, 12)
    again = iter(train_dataset(cfg, TOKENIZER, 8, seed=1))
    again.set_state(state)
    same(take(again, 3), rest)
    other = iter(train_dataset(cfg, TOKENIZER, 8, seed=2))
    assert not np.array_equal(next(other)["image"], first[0]["image"])


@pytest.mark.parametrize("kind", ("tfds", "files", "wds"))
def test_training_samples_one_caption_per_image_per_epoch(data, kind):
    """Records with two captions: each epoch draws one, so over epochs both are seen."""
    cfg = data_cfg(data["root"], kind, shuffle_buffer=0)
    it = iter(train_dataset(cfg, TOKENIZER, 8, seed=0))
    by_label: dict[int, set] = {}
    for batch in take(it, 3 * 6):  # 6 epochs
        for label, tokens in zip(batch["label"], batch["tokens"], strict=True):
            by_label.setdefault(int(label), set()).add(tokens.tobytes())
    want = {r["label"]: r["captions"] for r in data["splits"]["train"]}
    for label, seen in by_label.items():
        ids, _ = TOKENIZER(want[label])
        assert seen <= {row.tobytes() for row in ids}
    assert sum(len(s) == 2 for s in by_label.values()) >= len(by_label) // 2


@pytest.mark.parametrize("kind", KINDS)
def test_eval_rows_keep_every_caption_with_its_image_id(data, kind):
    cfg = data_cfg(data["root"], kind)
    batches = eval_batches(cfg, TOKENIZER, 5)
    valid = np.concatenate([b["valid"] for b in batches])
    ids = np.concatenate([b["image_id"] for b in batches])[valid]
    tokens = np.concatenate([b["tokens"] for b in batches])[valid]
    labels = np.concatenate([b["label"] for b in batches])[valid]
    assert all(b["image_id"].dtype == np.int32 for b in batches)
    # Two captions per image; the folder's one is its class name, and the wds samples of
    # shard 1 (6 and 7) have a plain txt caption (the first).
    counts = np.full(N_EVAL, 1 if kind == "folder" else 2)
    if kind == "wds":
        counts[6:] = 1
    np.testing.assert_array_equal(np.bincount(ids), counts)
    assert batches[0]["image"].shape == (5, SIZE, SIZE, 3)
    if kind == "folder":
        return
    records = {r["label"]: r["captions"] for r in data["splits"]["eval"]}
    for image_id in range(N_EVAL):
        rows = ids == image_id
        label = int(labels[rows][0])
        want = records[label][: counts[image_id]]
        np.testing.assert_array_equal(tokens[rows], TOKENIZER(want)[0])


def test_synthetic_eval_batches_carry_image_id():
    cfg = ml_collections.ConfigDict(
        dict(source="synthetic", eval_records=10, image_size=16, synthetic_seed=0)
    )
    batches = eval_batches(cfg, TOKENIZER, 4)
    ids = np.concatenate([b["image_id"][b["valid"]] for b in batches])
    np.testing.assert_array_equal(ids, np.arange(10))


def test_tfds_source_reads_fields_without_tensorflow(data):
    import sys

    cfg = data_cfg(data["root"], "tfds")
    train = sources.open_source(cfg.source, cfg, "train")
    evals = sources.open_source(cfg.source, cfg, "eval")
    assert (len(train), len(evals), evals.split) == (N_TRAIN, N_EVAL, "test")  # default split
    want = {r["label"]: r for r in data["splits"]["train"]}
    for i in range(len(train)):
        r = train[i]
        assert r["captions"] == want[r["label"]]["captions"]
        assert r["image"] == want[r["label"]]["png"]  # left encoded, decoded by mmjax
    assert "tensorflow" not in sys.modules
    with pytest.raises(SourceError, match=r"fields.caption='caption'.*'captions/text'"):
        TfdsSource(
            tfds_builder.NAME,
            "train",
            str(data["root"] / "tfds"),
            fields={"image": "image", "caption": "caption"},
        )
    cfg.source = "tfds:no_such_set_xyz"
    with pytest.raises(SourceError, match="tfds_data_dir"):
        sources.open_source(cfg.source, cfg, "train")
    assert parse_tfds_spec("coco_captions/2014:1.1.0") == ("coco_captions/2014:1.1.0", "")
    assert parse_tfds_spec("coco_captions:1.1.0:train[:90%]") == (
        "coco_captions:1.1.0",
        "train[:90%]",
    )
    assert parse_tfds_spec("cifar10:test[:50%]+train[:1%]") == ("cifar10", "test[:50%]+train[:1%]")


def test_files_jsonl_csv_and_folder_records(data):
    root = data["root"]
    jsonl = FilesSource(root / "files" / "train.jsonl")
    csv = FilesSource(root / "files" / "train.csv", template="a {}")
    folder = ImageFolderSource(root / "folder" / "train", template="a {}")
    assert len(jsonl) == len(csv) == len(folder) == N_TRAIN
    for i in range(N_TRAIN):
        r, c = jsonl[i], csv[i]
        assert r["image"] == c["image"]  # the same JPEG file, path relative to the CSV
        assert r["captions"] == data["splits"]["train"][i]["captions"]
        assert c["caption"] == r["captions"][0]
        shape = COMBINATIONS[r["label"]][0]
        assert csv.class_names[c["label"]] == shape and c["label_name"] == shape
    shapes = sorted({COMBINATIONS[r["label"]][0] for r in data["splits"]["train"]})
    assert folder.class_names == shapes
    first = folder[0]
    assert first["label"] == 0 and first["caption"] == f"a {shapes[0]}"
    assert Image.open(io.BytesIO(first["image"])).format == "PNG"


def test_wds_shards_braces_and_members(data):
    assert expand_braces("s-{08..10}.tar") == ["s-08.tar", "s-09.tar", "s-10.tar"]
    assert expand_braces("{a,b}-{0..1}") == ["a-0", "a-1", "b-0", "b-1"]
    shard = data["root"] / "wds" / "train-001.tar"
    samples = list(read_shard(str(shard)))
    assert [s["__key__"] for s in samples] == [f"train{i:04d}" for i in range(6, 12)]
    assert list(read_shard(str(shard), start=4))[0]["__key__"] == "train0010"
    assert set(samples[0]) == {"__key__", "png", "txt", "cls"}
    evals = WdsListSource(f"{data['root']}/wds/eval-{{000..001}}.tar")
    assert [evals[i]["label"] for i in range(N_EVAL)] == [
        r["label"] for r in data["splits"]["eval"]
    ]
    with pytest.raises(SourceError, match="do not exist"):
        WdsListSource(f"{data['root']}/wds/train-{{000..009}}.tar")


def test_wds_shards_split_between_processes(data, monkeypatch):
    """Two processes read disjoint shards; together they see every training sample."""
    import mmjax.data.pipeline as pipeline

    cfg = data_cfg(data["root"], "wds", shuffle_buffer=0)
    labels = []
    for index in range(2):
        monkeypatch.setattr(pipeline.jax, "process_count", lambda: 2)
        monkeypatch.setattr(pipeline.jax, "process_index", lambda i=index: i)
        it = iter(train_dataset(cfg, TOKENIZER, 8, seed=0))
        labels.append(np.concatenate([b["label"] for b in take(it, 3)]))  # 12 = 2 shards
    assert not set(labels[0]) & set(labels[1])
    assert sorted(np.concatenate(labels)) == sorted(r["label"] for r in data["splits"]["train"])


def test_wds_worker_processes_split_the_shards_and_resume(data):
    """With 2 grain workers each reads half of the shards (``set_slice``); batches
    alternate between them, and a saved state resumes exactly."""
    cfg = data_cfg(data["root"], "wds", num_workers=2, shuffle_buffer=4)
    shard_of = {r["label"]: i // 6 for i, r in enumerate(data["splits"]["train"])}
    it = iter(train_dataset(cfg, TOKENIZER, 4, seed=0))
    try:
        first = take(it, 2)
        state = json.loads(json.dumps(it.get_state()))
        rest = take(it, 3)
    finally:
        it.close()
    # Worker w reads shards w and w + 2: batch 0 from worker 0, batch 1 from worker 1.
    for w, batch in enumerate(first):
        assert {shard_of[int(x)] % 2 for x in batch["label"]} == {w}
    again = iter(train_dataset(cfg, TOKENIZER, 4, seed=0))
    try:
        again.set_state(state)
        same(take(again, 3), rest)
    finally:
        again.close()


def test_prepare_round_trip_and_interrupted_rerun(data, tmp_path, monkeypatch):
    root = data["root"]
    for kind, spec in (
        ("files", f"files:{root}/files/train.jsonl"),
        ("folder", f"folder:{root}/folder/train"),
        ("wds", f"wds:{root}/wds/train-{{000..003}}.tar"),
    ):
        original = sources.open_source(spec, data_cfg(root, kind), "train")
        out = tmp_path / kind
        manifest = prepare(spec, out, shard_size=5, progress=False)
        assert (manifest["num_records"], manifest["num_bad"]) == (N_TRAIN, 0)
        assert len(manifest["shards"]) == 5 and manifest["complete"]
        back = ArrayRecordSource(str(out / "*.array_record"), template="a {}")
        for i in range(N_TRAIN):
            assert original[i] == back[i], (kind, i)  # images: the same encoded bytes

    # Interrupted in the middle of shard 2 (a KeyboardInterrupt while reading input 12).
    spec, out = f"files:{root}/files/train.jsonl", tmp_path / "interrupted"
    real = FilesSource.raw

    def flaky(self, index, **kw):
        if index == 12:
            raise KeyboardInterrupt
        return real(self, index, **kw)

    monkeypatch.setattr(FilesSource, "raw", flaky)
    with pytest.raises(KeyboardInterrupt):
        prepare(spec, out, shard_size=5, progress=False)
    monkeypatch.setattr(FilesSource, "raw", real)
    assert (out / "part-00002.array_record.tmp").exists()
    assert sorted(p.name for p in out.glob("*.array_record")) == [
        "part-00000.array_record",
        "part-00001.array_record",
    ]
    with pytest.raises(SourceError, match="unfinished"):
        ArrayRecordSource(str(out))
    manifest = prepare(spec, out, shard_size=5, progress=False)
    assert manifest["num_records"] == N_TRAIN and not list(out.glob("*.tmp"))
    back, original = ArrayRecordSource(str(out)), FilesSource(root / "files" / "train.jsonl")
    assert len(back) == N_TRAIN
    assert [back[i]["key"] for i in range(N_TRAIN)] == [original[i]["key"] for i in range(N_TRAIN)]
    with pytest.raises(SourceError, match="shard_size=5"):
        prepare(spec, out, shard_size=7, progress=False)
