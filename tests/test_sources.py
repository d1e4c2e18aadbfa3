"""Real-data sources (TFDS, JSONL/CSV files, image folders, tar shards, prepared ArrayRecord),
``mmjax data prepare``, multi-caption eval rows and exact resumption for every source.

All data is made in the test from the synthetic shapes (so the shipped tokenizer covers
the captions), with images of varying size that the configured transforms crop to 32.
"""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path

import grain
import ml_collections
import numpy as np
import pytest
from PIL import Image

from mmjax.data import sources
from mmjax.data.pipeline import BadRecordError, eval_batches, train_dataset
from mmjax.data.prepare import prepare
from mmjax.data.sources.arrayrecord_source import ArrayRecordSource
from mmjax.data.sources.files_source import FilesSource
from mmjax.data.sources.image_folder import ImageFolderSource
from mmjax.data.sources.records import SourceError
from mmjax.data.sources.tfds_source import TfdsSource, parse_tfds_spec
from mmjax.data.sources.wds_source import WdsListSource, expand_braces, read_shard
from mmjax.data.synthetic import COMBINATIONS, TEMPLATES, SyntheticShapes
from mmjax.data.tokenizer import TextTokenizer

tfds_builder = pytest.importorskip("tests.tfds_builder")

N_TRAIN, N_EVAL, SIZE = 24, 8, 32
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


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> dict:
    """Every source kind over the same records, written once for the module."""
    root = tmp_path_factory.mktemp("sources")
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


def _specs(root: Path) -> dict[str, tuple[str, str]]:
    """(train source, eval source) per kind."""
    return {
        "tfds": (f"tfds:{tfds_builder.NAME}", f"tfds:{tfds_builder.NAME}:test"),
        "files": (f"files:{root}/files/train.jsonl", f"files:{root}/files/eval.jsonl"),
        "folder": (f"folder:{root}/folder/train", f"folder:{root}/folder/eval"),
        "wds": (f"wds:{root}/wds/train-{{000..003}}.tar", f"wds:{root}/wds/eval-{{000..001}}.tar"),
        "arrayrecord": (f"arrayrecord:{root}/prepared", f"arrayrecord:{root}/prepared_eval"),
    }


def _data_cfg(root: Path, kind: str, **kw) -> ml_collections.ConfigDict:
    train, evals = _specs(root)[kind]
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


def _take(it, n: int) -> list[dict]:
    return [{k: np.array(v) for k, v in next(it).items()} for _ in range(n)]


def _same(a: list[dict], b: list[dict]) -> None:
    for x, y in zip(a, b, strict=True):
        assert x.keys() == y.keys()
        for k in x:
            np.testing.assert_array_equal(x[k], y[k], err_msg=k)


KINDS = ("tfds", "files", "folder", "wds", "arrayrecord")


@pytest.mark.parametrize("kind", KINDS)
def test_resume_mid_epoch_reproduces_the_next_batches(data, kind):
    """For every source: the iterator state after 2 batches (through JSON, as checkpoints
    store it) gives exactly batches 3-5 again; 5 batches of 8 cross an epoch of 24."""
    cfg = _data_cfg(data["root"], kind)
    it = iter(train_dataset(cfg, TOKENIZER, 8, seed=1))
    first = _take(it, 2)
    state = json.loads(json.dumps(it.get_state()))
    rest = _take(it, 3)
    assert first[0]["image"].shape == (8, SIZE, SIZE, 3) and first[0]["image"].dtype == np.uint8
    assert first[0]["tokens"].shape == (8, 12)
    again = iter(train_dataset(cfg, TOKENIZER, 8, seed=1))
    again.set_state(state)
    _same(_take(again, 3), rest)
    other = iter(train_dataset(cfg, TOKENIZER, 8, seed=2))
    assert not np.array_equal(next(other)["image"], first[0]["image"])


@pytest.mark.parametrize("kind", ("tfds", "files", "wds"))
def test_training_samples_one_caption_per_image_per_epoch(data, kind):
    """Records with two captions: each epoch draws one, so over epochs both are seen."""
    cfg = _data_cfg(data["root"], kind, shuffle_buffer=0)
    it = iter(train_dataset(cfg, TOKENIZER, 8, seed=0))
    by_label: dict[int, set] = {}
    for batch in _take(it, 3 * 6):  # 6 epochs
        for label, tokens in zip(batch["label"], batch["tokens"], strict=True):
            by_label.setdefault(int(label), set()).add(tokens.tobytes())
    want = {r["label"]: r["captions"] for r in data["splits"]["train"]}
    for label, seen in by_label.items():
        ids, _ = TOKENIZER(want[label])
        assert seen <= {row.tobytes() for row in ids}
    assert sum(len(s) == 2 for s in by_label.values()) >= len(by_label) // 2


@pytest.mark.parametrize("kind", KINDS)
def test_eval_rows_keep_every_caption_with_its_image_id(data, kind):
    cfg = _data_cfg(data["root"], kind)
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

    cfg = _data_cfg(data["root"], "tfds")
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

    cfg = _data_cfg(data["root"], "wds", shuffle_buffer=0)
    labels = []
    for index in range(2):
        monkeypatch.setattr(pipeline.jax, "process_count", lambda: 2)
        monkeypatch.setattr(pipeline.jax, "process_index", lambda i=index: i)
        it = iter(train_dataset(cfg, TOKENIZER, 8, seed=0))
        labels.append(np.concatenate([b["label"] for b in _take(it, 3)]))  # 12 = 2 shards
    assert not set(labels[0]) & set(labels[1])
    assert sorted(np.concatenate(labels)) == sorted(r["label"] for r in data["splits"]["train"])


def test_wds_worker_processes_split_the_shards_and_resume(data):
    """With 2 grain workers each reads half of the shards (``set_slice``); batches
    alternate between them, and a saved state resumes exactly."""
    cfg = _data_cfg(data["root"], "wds", num_workers=2, shuffle_buffer=4)
    shard_of = {r["label"]: i // 6 for i, r in enumerate(data["splits"]["train"])}
    it = iter(train_dataset(cfg, TOKENIZER, 4, seed=0))
    try:
        first = _take(it, 2)
        state = json.loads(json.dumps(it.get_state()))
        rest = _take(it, 3)
    finally:
        it.close()
    # Worker w reads shards w and w + 2: batch 0 from worker 0, batch 1 from worker 1.
    for w, batch in enumerate(first):
        assert {shard_of[int(x)] % 2 for x in batch["label"]} == {w}
    again = iter(train_dataset(cfg, TOKENIZER, 4, seed=0))
    try:
        again.set_state(state)
        _same(_take(again, 3), rest)
    finally:
        again.close()


def test_prepare_round_trip_and_interrupted_rerun(data, tmp_path, monkeypatch):
    root = data["root"]
    for kind, spec in (
        ("files", f"files:{root}/files/train.jsonl"),
        ("folder", f"folder:{root}/folder/train"),
        ("wds", f"wds:{root}/wds/train-{{000..003}}.tar"),
    ):
        original = sources.open_source(spec, _data_cfg(root, kind), "train")
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

    def flaky(self, index):
        if index == 12:
            raise KeyboardInterrupt
        return real(self, index)

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


@pytest.fixture()
def bad_files(data, tmp_path) -> Path:
    """train.jsonl with record 3's image missing and record 7's JPEG corrupt."""
    src = data["root"] / "files"
    lines = (src / "train.jsonl").read_text().splitlines()
    rows = [json.loads(x) for x in lines]
    for row in rows:
        row["image"] = str(src / row["image"])
    rows[3]["image"] = str(tmp_path / "gone.jpg")
    corrupt = tmp_path / "corrupt.jpg"
    corrupt.write_bytes((src / rows[7]["image"]).read_bytes()[:200] + b"\x00garbage")
    rows[7]["image"] = str(corrupt)
    path = tmp_path / "bad.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_bad_records_in_files_are_skipped_counted_or_named(bad_files, tmp_path):
    cfg = ml_collections.ConfigDict(
        dict(
            source=f"files:{bad_files}",
            eval_source=f"files:{bad_files}",
            image_size=SIZE,
            train_transform="random_resized_crop",
            eval_transform="resize_center_crop",
            num_threads=1,
            prefetch=1,
            allow_outside_root=True,  # bad.jsonl names images in another directory
        )
    )
    # Expected skips: a slot whose record is bad takes the next epoch's record there.
    order = grain.MapDataset.range(N_TRAIN).shuffle(seed=0).repeat(None)
    want = 0
    for pos in range(N_TRAIN):
        k = 0
        while int(order[pos + k * N_TRAIN]) in (3, 7):
            k += 1
        want += k
    it = iter(train_dataset(cfg, TOKENIZER, 8, seed=0))
    assert sum(int(b["skipped"].sum()) for b in _take(it, 3)) == want > 0
    # Eval leaves the bad rows out (valid False).
    rows = np.concatenate([b["valid"] for b in eval_batches(cfg, TOKENIZER, 8)])
    assert rows.sum() == 2 * (N_TRAIN - 2)
    cfg.bad_records = "fail"
    with pytest.raises(BadRecordError, match=r"gone\.jpg|unreadable image"):
        _take(iter(train_dataset(cfg, TOKENIZER, 8, seed=0)), 3)
    with pytest.raises(BadRecordError, match=r"missing image file .*gone\.jpg"):
        eval_batches(cfg, TOKENIZER, 8)
    manifest = prepare(
        f"files:{bad_files}", tmp_path / "prep", 10, progress=False, allow_outside_root=True
    )
    assert (manifest["num_records"], manifest["num_bad"]) == (N_TRAIN - 2, 2)
    reasons = " ".join(b["reason"] for b in manifest["bad"])
    assert "gone.jpg" in reasons and "bad.jsonl:8: unreadable image" in reasons


def test_config_errors_name_the_key(data):
    cfg = _data_cfg(data["root"], "files", eval_source="")
    with pytest.raises(SourceError, match="config.data.eval_source"):
        eval_batches(cfg, TOKENIZER, 8)
    cfg = _data_cfg(data["root"], "files", train_transform="none")
    with pytest.raises(ValueError, match="config.data.train_transform"):
        next(iter(train_dataset(cfg, TOKENIZER, 8, seed=0)))
    with pytest.raises(SourceError, match="unknown source 'ftp:x'"):
        sources.parse_spec("ftp:x")
    bad = data["root"] / "broken.jsonl"
    bad.write_text('{"image": "a.jpg", "caption": "a"}\n{not json\n')
    with pytest.raises(SourceError, match=r"broken\.jsonl:2"):
        FilesSource(bad)


@pytest.mark.parametrize(
    ("kind", "eval_kind"),
    [(k, e) for k, e in zip(KINDS, KINDS[1:] + KINDS[:1], strict=True)],
)
def test_train_a_few_steps(data, kind, eval_kind, tmp_path):
    """``mmjax.train.loop.train`` on each source (evaluating on another kind)."""
    from mmjax import config as config_lib
    from mmjax.train.loop import train

    cfg = config_lib.load_config(f"{Path(__file__).parent.parent}/configs/clip_synthetic.py:tiny")
    cfg.data.update(_data_cfg(data["root"], kind, eval_source=_specs(data["root"])[eval_kind][1]))
    cfg.train.update(
        steps=3, batch_size=8, eval_batch_size=8, log_every=3, eval_every=3, checkpoint_every=3
    )
    result = train(cfg, tmp_path / "run")
    assert np.isfinite(result["loss"]) and "eval/i2t_r1" in result
    rows = [json.loads(x) for x in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert rows[-1]["step"] == 3
    data_state = list((tmp_path / "run" / "checkpoints" / "3" / "data").glob("process_0-of-1*"))
    assert data_state, "the iterator state is saved with the checkpoint"


def test_cli_data_prepare(data, tmp_path, capsys):
    from mmjax.cli import app as cli

    spec = f"folder:{data['root']}/folder/eval"
    assert cli.main(["data", "prepare", "--source", spec, "--out", str(tmp_path / "p")]) == 0
    assert f"wrote {N_EVAL} records in 1 files" in capsys.readouterr().out
    assert len(ArrayRecordSource(str(tmp_path / "p"))) == N_EVAL
    # exit code 5: bad data (mmjax.errors)
    assert cli.main(["data", "prepare", "--source", "synthetic", "--out", str(tmp_path)]) == 5
    assert "prepare reads files:, folder:, wds:" in capsys.readouterr().err
