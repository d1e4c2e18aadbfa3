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


def _smoke(
    script: str, tmp_path: Path, timeout: int, *args: str
) -> tuple[subprocess.CompletedProcess, list[dict]]:
    """Runs ``benchmarks/<script> --smoke`` (with ``args``), which must succeed, and returns
    the process and the rows it wrote with ``--json``."""
    out = tmp_path / "rows.json"
    cmd = [sys.executable, str(ROOT / "benchmarks" / script), "--smoke", *args, "--json", str(out)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc, json.loads(out.read_text())


def test_vs_peers_smoke_writes_rows(tmp_path: Path) -> None:
    proc, rows = _smoke("vs_peers.py", tmp_path, 120)
    assert rows and {r["impl"] for r in rows} == {"mmjax"}
    row = rows[0]
    assert KEYS <= set(row), KEYS - set(row)
    assert (row["config"], row["variant"]) == ("tiny", "full")
    assert row["step_s"] > 0 and row["samples_per_s"] > 0 and row["flops_per_sample"] > 0
    assert 0 < row["mfu"] < 1
    # mmjax alone: jax's own peak is the run's best, so the two fractions agree
    assert row["of_own_peak"] == row["flops_per_s"] / row["framework_peak_flops"] == row["mfu"]
    assert "samples/s" in proc.stdout and "of own" in proc.stdout


def test_data_loader_smoke_writes_rows(tmp_path: Path) -> None:
    """``benchmarks/data_loader.py --smoke``: a few JPEGs, grain and torch with 0 workers,
    the same pixels from both, and the tiny config's train step."""
    proc, rows = _smoke("data_loader.py", tmp_path, 300, "--dir", str(tmp_path / "jpegs"))
    assert {(r["loader"], r["workers"]) for r in rows} == {("grain", 0), ("torch", 0)}
    assert all(r["images_per_s"] > 0 and r["step_images_per_s"] > 0 for r in rows)
    assert len({r["batch_sha1"] for r in rows}) == 1  # both loaders made the same pixels
    assert len(list((tmp_path / "jpegs").glob("*.jpg"))) == 8
    assert "same pixels from grain and torch (first timed batch): yes" in proc.stdout
