"""Real-data sources in the pipeline and the trainer: bad records skipped, counted or
named, config errors naming the key, a few training steps on every source kind, and
``mmjax data prepare`` from the command line. The data: tests/source_data.py.
"""

from __future__ import annotations

import json
from pathlib import Path

import grain
import ml_collections
import numpy as np
import pytest

from mmjax.data import sources
from mmjax.data.pipeline import BadRecordError, eval_batches, train_dataset
from mmjax.data.prepare import prepare
from mmjax.data.sources.arrayrecord_source import ArrayRecordSource
from mmjax.data.sources.files_source import FilesSource
from mmjax.data.sources.records import SourceError
from tests.source_data import (  # importing it skips without tensorflow-datasets
    KINDS,
    N_EVAL,
    N_TRAIN,
    SIZE,
    TOKENIZER,
    data_cfg,
    source_data,
    specs,
    take,
)

data = pytest.fixture(source_data)  # the sources, written once per session


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
    assert sum(int(b["skipped"].sum()) for b in take(it, 3)) == want > 0
    # Eval leaves the bad rows out (valid False).
    rows = np.concatenate([b["valid"] for b in eval_batches(cfg, TOKENIZER, 8)])
    assert rows.sum() == 2 * (N_TRAIN - 2)
    cfg.bad_records = "fail"
    with pytest.raises(BadRecordError, match=r"gone\.jpg|unreadable image"):
        take(iter(train_dataset(cfg, TOKENIZER, 8, seed=0)), 3)
    with pytest.raises(BadRecordError, match=r"missing image file .*gone\.jpg"):
        eval_batches(cfg, TOKENIZER, 8)
    manifest = prepare(
        f"files:{bad_files}", tmp_path / "prep", 10, progress=False, allow_outside_root=True
    )
    assert (manifest["num_records"], manifest["num_bad"]) == (N_TRAIN - 2, 2)
    reasons = " ".join(b["reason"] for b in manifest["bad"])
    assert "gone.jpg" in reasons and "bad.jsonl:8: unreadable image" in reasons


def test_config_errors_name_the_key(data):
    cfg = data_cfg(data["root"], "files", eval_source="")
    with pytest.raises(SourceError, match="config.data.eval_source"):
        eval_batches(cfg, TOKENIZER, 8)
    cfg = data_cfg(data["root"], "files", train_transform="none")
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
    cfg.data.update(data_cfg(data["root"], kind, eval_source=specs(data["root"])[eval_kind][1]))
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
