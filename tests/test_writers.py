"""Metric writers (``config.train.writers``): W&B through the real wandb package, offline."""

from __future__ import annotations

import json
import time

import pytest

from mmjax.train.metric_writer import MetricWriter


def test_wandb_writer_resumes_the_same_run_offline(tmp_path, monkeypatch):
    pytest.importorskip("wandb")
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    writer = MetricWriter(tmp_path, ["jsonl", "wandb"], {"train": {"steps": 4}})
    writer.write(1, {"loss": 2.5})
    writer.close()
    run_id = (tmp_path / "wandb_run_id").read_text().strip()
    writer = MetricWriter(tmp_path, ["wandb"], {"train": {"steps": 4}})  # a restart
    assert writer._wandb.run.id == run_id
    writer.write(2, {"loss": 1.5, "eval/i2t_r1": 0.25})
    writer.close()
    runs = sorted((tmp_path / "wandb").glob("offline-run-*"))
    # two sessions of one run id (a second in the same second gets a '-1' suffix)
    assert len(runs) == 2 and all(f"-{run_id}" in r.name for r in runs)
    # the offline run log (protobuf records) holds the logged keys of its session; wandb's
    # service process writes it and can still be flushing when finish() returns
    log = b""
    deadline = time.monotonic() + 20
    while b"eval/i2t_r1" not in log and time.monotonic() < deadline:
        log = (runs[-1] / f"run-{run_id}.wandb").read_bytes()
        time.sleep(0.2)
    assert b"eval/i2t_r1" in log and b"loss" in log
    # jsonl only on the first writer: one row
    assert [json.loads(x)["step"] for x in (tmp_path / "metrics.jsonl").open()] == [1]


def test_unknown_writer_is_named(tmp_path):
    with pytest.raises(ValueError, match=r"train.writers: unknown \['csv'\]"):
        MetricWriter(tmp_path, ["jsonl", "csv"])


def test_plot_draws_the_curves(tmp_path):
    pytest.importorskip("matplotlib")
    import PIL.Image

    from mmjax.cli.app import main

    rows = [{"step": s, "loss": 3.0 / s, "lr": 0.1 * s} for s in (1, 2, 3)]
    rows.append({"step": 3, "eval/i2t_r1": 0.5, "eval/zeroshot_acc": 0.25})
    (tmp_path / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert main(["plot", "--workdir", str(tmp_path), "--out", str(tmp_path / "p")]) == 0
    with PIL.Image.open(tmp_path / "p" / "curves.png") as img:
        assert img.size == (1500, 400)
    assert main(["plot", "--workdir", str(tmp_path / "missing")]) == 10  # file system
