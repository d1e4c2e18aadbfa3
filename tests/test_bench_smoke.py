"""Smoke test of ``benchmarks/vs_peers.py``: the tiny config, mmjax only, 2 timed steps."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
KEYS = {
    "impl",
    "config",
    "batch",
    "precision",
    "variant",
    "step_s",
    "samples_per_s",
    "flops_per_sample",
    "mfu",
}


def test_vs_peers_smoke_writes_rows(tmp_path: Path) -> None:
    out = tmp_path / "rows.json"
    proc = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "vs_peers.py"), "--smoke", "--json", str(out)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    rows = json.loads(out.read_text())
    assert rows and {r["impl"] for r in rows} == {"mmjax"}
    row = rows[0]
    assert KEYS <= set(row), KEYS - set(row)
    assert (row["config"], row["variant"]) == ("tiny", "full")
    assert row["step_s"] > 0 and row["samples_per_s"] > 0 and row["flops_per_sample"] > 0
    assert 0 < row["mfu"] < 1
    assert "samples/s" in proc.stdout


def test_data_loader_smoke_writes_rows(tmp_path: Path) -> None:
    """``benchmarks/data_loader.py --smoke``: a few JPEGs, grain and torch with 0 workers,
    the same pixels from both, and the tiny config's train step."""
    out = tmp_path / "rows.json"
    proc = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "data_loader.py"), "--smoke"]
        + ["--dir", str(tmp_path / "jpegs"), "--json", str(out)],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=ROOT,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    rows = json.loads(out.read_text())
    assert {(r["loader"], r["workers"]) for r in rows} == {("grain", 0), ("torch", 0)}
    assert all(r["images_per_s"] > 0 and r["step_images_per_s"] > 0 for r in rows)
    assert len({r["batch_sha1"] for r in rows}) == 1  # both loaders made the same pixels
    assert len(list((tmp_path / "jpegs").glob("*.jpg"))) == 8
    assert "same pixels from grain and torch (first timed batch): yes" in proc.stdout
