"""``mmjax compile``: TPU slice names, collectives read from compiled HLO, and an ahead-of-time
compile for a real TPU topology (libtpu's compiler, no TPU) that fits and one that does not."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys

import pytest

from mmjax.parallel.tpu_topology import CHIPS, parse_topology
from tests.conftest import REPO, run_python

needs_libtpu = pytest.mark.skipif(
    importlib.util.find_spec("libtpu") is None, reason="libtpu not installed (mmjax[tpu])"
)


@pytest.mark.parametrize(
    "name, jax_name, chips",
    [
        ("v5e-256", "v5e:16x16", 256),
        ("v5litepod-16", "v5e:4x4", 16),
        ("v5e-4", "v5e:2x2", 4),
        ("v6e-64", "v6e:8x8", 64),
        # v4 / v5p accelerator types count TensorCores, two per chip (Cloud TPU docs' tables)
        ("v4-8", "v4:2x2x1", 4),
        ("v4-32", "v4:2x2x4", 16),
        ("v5p-128", "v5p:4x4x4", 64),
        ("v5p-256", "v5p:4x4x8", 128),
        ("v5e:4x8", "v5e:4x8", 32),
    ],
)
def test_topology_names(name: str, jax_name: str, chips: int) -> None:
    t = parse_topology(name)
    assert (t.jax_name, t.num_chips) == (jax_name, chips)


def test_topology_errors_name_the_input() -> None:
    for bad in ("v9-8", "v5e-12", "v4-7", "tpu"):
        with pytest.raises(ValueError, match="--topology"):
            parse_topology(bad)
    assert parse_topology("v5e-256", num_slices=2).total_chips == 512
    assert CHIPS["v5e"].hbm_bytes == 16 * 2**30


def test_collectives_count_loop_iterations() -> None:
    """A 5-step scan of all_gather + psum + ppermute under shard_map on 8 CPU devices: each
    collective runs 5 times per call, with the sizes jax.lax defines."""
    out = run_python(
        """
import json, jax, jax.numpy as jnp
from jax.sharding import PartitionSpec as P
from mmjax.parallel.hlo_collectives import collectives
mesh = jax.make_mesh((8,), ("x",), axis_types=(jax.sharding.AxisType.Auto,))
def body(c, _):
    g = jax.lax.all_gather(c, "x", tiled=True)               # [64, 32] f32 = 8 KiB
    s = jax.lax.psum(c, "x")                                 # [8, 32] f32 = 1 KiB
    p = jax.lax.ppermute(c, "x", [(i, (i + 1) % 8) for i in range(8)])
    return c + s + p + g[:8], None
def f(x):
    return jax.lax.scan(body, x, None, length=5)[0]
g = jax.jit(jax.shard_map(f, mesh=mesh, in_specs=P("x"), out_specs=P("x")))
x = jax.ShapeDtypeStruct((64, 32), jnp.float32, sharding=jax.NamedSharding(mesh, P("x")))
hlo = g.lower(x).compile().as_text()
print(json.dumps(collectives(hlo)))
""",
        devices=8,
    )
    c = json.loads(out.strip().splitlines()[-1])
    assert c["all-gather"] == {"count": 5, "bytes": 5 * 64 * 32 * 4}
    assert c["all-reduce"] == {"count": 5, "bytes": 5 * 8 * 32 * 4}
    assert c["collective-permute"] == {"count": 5, "bytes": 5 * 8 * 32 * 4}


@needs_libtpu
def test_train_does_not_load_libtpu_on_a_cpu_host() -> None:
    """With libtpu installed, the CLI's platform choice keeps jax from loading it where the
    host has no TPU chip (its probe and lockfile), unless JAX_PLATFORMS says otherwise."""
    env = {k: v for k, v in os.environ.items() if k != "JAX_PLATFORMS"}
    code = (
        "import os; from mmjax.parallel.tpu_topology import skip_tpu_probe; skip_tpu_probe();"
        "import jax; jax.devices(); print(os.environ['JAX_PLATFORMS'],"
        "'libtpu' in open('/proc/self/maps').read())"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120
    )
    assert proc.stdout.split() == ["cpu", "False"], proc.stderr[-2000:]


@needs_libtpu
def test_compile_for_v5e_4_fits_and_a_huge_batch_does_not(tmp_path) -> None:
    """The tiny CLIP's real train step compiled by libtpu for a 2x2 v5e slice: per-chip
    memory, FLOPs within 20% of the analytic count, FSDP's all-gathers; then a batch whose
    activations need ~100 GB per chip fails with needed vs available."""
    report = tmp_path / "r.json"
    code = f"""
from mmjax.cli.app import main
base = ["compile", "--config", "configs/clip_vit_b32.py:tiny", "--topology", "v5e-4",
        "--config.mesh.data=1", "--config.mesh.fsdp=-1"]
print("rc", main(base + ["--json", "{report}"]))
print("rc", main(base + ["--config.train.batch_size=262144"]))
"""
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=540, cwd=REPO
    )
    rcs = [line.split()[1] for line in proc.stdout.splitlines() if line.startswith("rc ")]
    assert rcs == ["0", "1"], proc.stdout[-3000:] + proc.stderr[-3000:]
    r = json.loads(report.read_text())
    assert r["jax_topology"] == "v5e:2x2" and r["num_chips"] == 4
    assert r["mesh"] == {"data": 1, "fsdp": 4, "tensor": 1} and r["fits"]
    assert 0 < r["memory_total"] < r["chip"]["hbm_bytes"]
    assert 0.8 < r["xla_flops_per_chip"] * 4 / r["analytic_flops"] < 1.2
    assert r["collectives"]["all-gather"]["count"] > 0
    assert r["roofline"]["bound_s"] > 0
    assert "on v5e-4: does not fit: needs" in proc.stderr
    assert "per chip" in proc.stderr and "15.75G" in proc.stderr
