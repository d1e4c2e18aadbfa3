"""Hostile or broken records: a decompression bomb, a truncated tar member, json fields of
the wrong type, a malformed label, a non-UTF-8 line, paths outside the data root."""

from __future__ import annotations

import json
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest

from mmjax.cli import app as cli
from mmjax.data.pipeline import train_dataset
from mmjax.data.sources.files_source import FilesSource
from mmjax.data.sources.records import SourceError
from mmjax.data.sources.wds_source import WdsIterDataset, wds_record
from mmjax.data.tokenizer import load_tokenizer
from mmjax.data.transforms import BadRecord, decode_image
from mmjax.hf.formats import WeightFileError, read_weights
from tests.source_data import _png, _tar

SIZE = 16


def _bomb_png(width: int = 50_000, height: int = 50_000) -> bytes:
    """A valid PNG header claiming ``width`` x ``height`` pixels, with a tiny IDAT (what a
    hostile data set ships: a few bytes that would decode to gigabytes)."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        crc = zlib.crc32(kind + body) & 0xFFFFFFFF
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", crc)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", ihdr)
        + chunk(b"IDAT", zlib.compress(b"\x00" * 64))
        + chunk(b"IEND", b"")
    )


def _captions(root: Path, rows: list[dict]) -> Path:
    path = root / "captions.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def _good_images(root: Path, n: int) -> list[dict]:
    rng = np.random.default_rng(0)
    rows = []
    for i in range(n):
        (root / f"{i}.png").write_bytes(_png(rng.integers(0, 255, (SIZE, SIZE, 3), np.uint8)))
        rows.append({"image": f"{i}.png", "caption": "a red circle"})
    return rows


def test_decompression_bomb_in_a_files_source_is_skipped_and_counted(tiny_config, tmp_path):
    rows = _good_images(tmp_path, 15)
    (tmp_path / "bomb.png").write_bytes(_bomb_png())
    rows.append({"image": "bomb.png", "caption": "a red circle"})
    with pytest.raises(BadRecord, match="too large|larger than"):
        decode_image((tmp_path / "bomb.png").read_bytes())
    data_cfg = tiny_config.data
    data_cfg.update(source=f"files:{_captions(tmp_path, rows)}", image_size=SIZE)
    batches = train_dataset(data_cfg, load_tokenizer("synthetic", 12), 16, seed=0)
    batch = next(iter(batches))  # one epoch of 16 records: the bomb is read once
    assert int(np.sum(batch["skipped"])) == 1
    assert batch["image"].shape == (16, SIZE, SIZE, 3)
    # A limit of its own: a 20 x 20 image is a bomb under max_image_pixels=300.
    data_cfg.max_image_pixels = 300
    (tmp_path / "0.png").write_bytes(_png(np.zeros((20, 20, 3), np.uint8)))
    batch = next(iter(train_dataset(data_cfg, load_tokenizer("synthetic", 12), 16, seed=0)))
    assert int(np.sum(batch["skipped"])) == 2


@pytest.mark.parametrize("path", ["../secret.png", "/etc/passwd", "a/../../x.png"])
def test_paths_outside_the_data_root_are_refused_naming_the_record(tmp_path, capsys, path):
    root = tmp_path / "data"
    root.mkdir()
    rows = _good_images(root, 2) + [{"image": path, "caption": "x"}]
    captions = _captions(root, rows)
    with pytest.raises(SourceError, match=rf"captions\.jsonl:3: path '{path}' is outside"):
        FilesSource(captions)
    out = tmp_path / "prepared"
    spec = f"files:{captions}"
    assert cli.main(["data", "prepare", "--source", spec, "--out", str(out), "--no-verify"]) == 5
    err = capsys.readouterr().err
    assert "captions.jsonl:3: path" in err and "allow-outside-root" in err
    assert not list(out.glob("*.array_record"))  # nothing copied
    assert len(FilesSource(captions, allow_outside_root=True)) == 3  # the user's opt-in


def test_files_source_names_a_malformed_label_and_a_non_utf8_line(tmp_path):
    rows = [{"image": f"{i}.png", "caption": "c", "label": i % 3} for i in range(5)]
    rows[3]["label"] = "cat"
    with pytest.raises(SourceError, match=r"captions\.jsonl:4: label 'cat' mixes"):
        FilesSource(_captions(tmp_path, rows))
    path = tmp_path / "captions.jsonl"
    path.write_bytes(
        b'{"image": "0.png", "caption": "ok"}\n{"image": "1.png", "caption": "\xff"}\n'
    )
    with pytest.raises(SourceError, match=r"captions\.jsonl:2: not UTF-8"):
        FilesSource(path)


def test_wds_truncated_member_and_wrong_json_types_are_bad_records(tmp_path):
    image = _png(np.zeros((SIZE, SIZE, 3), np.uint8))
    shard = tmp_path / "s.tar"
    caption = b"a long caption that the cut shard ends in the middle of " * 20
    _tar(shard, [("000.png", image), ("000.txt", caption)])
    raw = shard.read_bytes()
    cut = raw.index(caption) + len(caption) // 2
    shard.write_bytes(raw[:cut])
    # Python's tarfile raises on the short member; the stream warns and moves on, and no
    # record with a cut caption comes out (read_shard also marks a short read as bad).
    with pytest.warns(UserWarning, match=r"stopped reading shard .*s\.tar at sample 0"):
        good = tmp_path / "good.tar"
        _tar(good, [("001.png", image), ("001.txt", caption)])
        ds = WdsIterDataset([str(good), str(shard)], shuffle_shards=False, num_epochs=1)
        records = [wds_record(s) for s in ds]
    assert [r["caption"] for r in records] == [caption.decode().strip()]

    def record(meta: dict) -> dict:
        return wds_record({"__key__": "k", "png": image, "json": json.dumps(meta).encode()})

    assert record({"captions": ["a", "b"], "label": "3"})["label"] == 3
    for meta, message in (
        ({"captions": "one caption"}, "'captions' must be a list of strings, got str"),
        ({"caption": "c", "label": "cat"}, "'label' must be an integer, got 'cat'"),
        ({"caption": 7}, "'caption' must be a string"),
    ):
        with pytest.raises(BadRecord, match=message):
            record(meta)


def test_hf_index_naming_a_shard_outside_its_directory_is_refused(tmp_path):
    index = tmp_path / "model.safetensors.index.json"
    index.write_text(json.dumps({"weight_map": {"w": "../../etc/x.safetensors"}}))
    with pytest.raises(WeightFileError, match="outside its directory"):
        read_weights(index)
