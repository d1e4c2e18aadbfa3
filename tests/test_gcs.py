"""``gs://`` workdirs and data against a real GCS JSON-API server on loopback
(``gcp-storage-emulator``), found through ``STORAGE_EMULATOR_HOST`` alone, as on a pod."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import ml_collections
import numpy as np
import pytest

from mmjax import storage
from mmjax.data.pipeline import train_dataset
from mmjax.data.tokenizer import TextTokenizer
from mmjax.train.checkpoint import latest_step_dir, read_state
from mmjax.train.loop import train
from tests.conftest import REPO, train_cmd
from tests.source_data import _records, _tar
from tests.test_failures import _assert_same_params, _config, _kill, _wait_for

pytest.importorskip("gcp_storage_emulator")
pytest.importorskip("gcsfs")
BUCKET = "mmjax-test"
STEPS = 60  # checkpoints every 10 (test_train's command)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def gcs():
    """An in-memory emulator on 127.0.0.1 with one bucket; ``STORAGE_EMULATOR_HOST`` set
    for this process (and the runs it starts) while the module's tests run."""
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    proc = subprocess.Popen(
        [sys.executable, str(REPO / "tests" / "gcs_emulator.py"), "start", "--host", "127.0.0.1",
         "--port", str(port), "--in-memory"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    saved = {k: os.environ.get(k) for k in ("STORAGE_EMULATOR_HOST", "TENSORSTORE_GCS_HTTP_URL")}
    try:
        deadline = time.time() + 60
        while True:
            try:
                urllib.request.urlopen(f"{url}/storage/v1/b?project=test", timeout=2)
                break
            except OSError:
                assert proc.poll() is None and time.time() < deadline, "emulator did not start"
                time.sleep(0.1)
        body = json.dumps({"name": BUCKET}).encode()
        request = urllib.request.Request(
            f"{url}/storage/v1/b?project=test", data=body, method="POST",
            headers={"Content-Type": "application/json"},
        )  # fmt: skip
        urllib.request.urlopen(request, timeout=10)
        os.environ["STORAGE_EMULATOR_HOST"] = url  # the one variable a user sets
        os.environ.pop("TENSORSTORE_GCS_HTTP_URL", None)
        storage._configured = False  # derive tensorstore's URL from it, as a fresh run does
        yield url
    finally:
        proc.kill()
        proc.wait(timeout=30)
        for k, v in saved.items():
            os.environ.pop(k, None) if v is None else os.environ.__setitem__(k, v)
        storage._configured = False


def _objects(url: str, prefix: str) -> list[str]:
    """Object names under ``gs://BUCKET/prefix/`` from the server's own listing (gcsfs
    caches listings and does not see tensorstore's writes)."""
    query = f"{url}/storage/v1/b/{BUCKET}/o?prefix={prefix}/&maxResults=100000"
    items = json.load(urllib.request.urlopen(query, timeout=10)).get("items", [])
    return [i["name"] for i in items]


def _saved_steps(url: str, prefix: str) -> list[int]:
    """Step directories under ``gs://BUCKET/prefix``."""
    names = {n[len(prefix) + 1 :].split("/")[0] for n in _objects(url, prefix)}
    return sorted(int(n) for n in names if n.isdigit())


def _forget_listings() -> None:
    import fsspec

    fsspec.filesystem("gs").invalidate_cache()


def test_train_on_gs_killed_then_resumed_is_bit_identical(gcs, tiny_config, tmp_path):
    """`mmjax train --workdir gs://...` is killed -9 after its 2nd checkpoint, resumed from
    the bucket, and ends with exactly the params of an uninterrupted local run; metrics,
    config and TensorBoard files are in the bucket and no local `gs:` folder appears."""
    local = tmp_path / "straight"
    train(_config(tiny_config, STEPS), local)
    workdir = f"gs://{BUCKET}/runs/tiny"
    saved = lambda: _saved_steps(gcs, "runs/tiny/checkpoints")  # noqa: E731
    cmd = train_cmd(Path("unused"), STEPS)
    cmd[cmd.index("--workdir") + 1] = workdir
    log = tmp_path / "killed.log"
    with log.open("w") as out:
        proc = subprocess.Popen(
            cmd,
            cwd=tmp_path, env=dict(os.environ, JAX_PLATFORMS="cpu"),
            stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
        try:
            _wait_for(proc, lambda: len(saved()) >= 2, timeout=600, poll=0.2)
        except AssertionError as e:
            raise AssertionError(f"{e}; the run's output:\n{log.read_text()[-3000:]}") from None
        finally:
            _kill(proc)
    assert max(saved()) < STEPS
    _forget_listings()
    train(_config(tiny_config, STEPS), workdir)
    _forget_listings()
    _assert_same_params(read_state(latest_step_dir(workdir))["params"], read_state(
        latest_step_dir(local))["params"])  # fmt: skip
    rows = [json.loads(x) for x in storage.user_path(f"{workdir}/metrics.jsonl").read_text()
            .splitlines()]  # fmt: skip
    assert rows[-1]["step"] == STEPS
    objects = _objects(gcs, "runs/tiny")
    assert "runs/tiny/config.json" in objects
    assert any("/tensorboard/events.out.tfevents" in p for p in objects)
    for where in (tmp_path, REPO, Path.cwd()):
        assert not (where / "gs:").exists(), where


def test_wds_shards_read_from_gs_as_from_disk(gcs, tmp_path):
    """The same tar shards, local and in the bucket (brace and glob specs): identical
    batches."""
    records = _records("train", 12)
    for s in range(2):
        members = []
        for i in range(6 * s, 6 * s + 6):
            key = f"k{i:04d}"
            members += [(f"{key}.png", records[i]["png"]), (f"{key}.txt", b"a red square")]
        _tar(tmp_path / f"train-{s:03d}.tar", members)
    storage.copy_tree(tmp_path, storage.user_path(f"gs://{BUCKET}/shards"))
    tokenizer = TextTokenizer.synthetic(12)

    def batches(spec: str) -> list[dict]:
        cfg = ml_collections.ConfigDict(
            dict(source=f"wds:{spec}", image_size=32, train_transform="resize_center_crop",
                 eval_transform="resize_center_crop", shuffle_buffer=4, num_threads=1,
                 prefetch=1, crop_scale=(0.5, 1.0), crop_ratio=(0.75, 1.33), hflip=False)
        )  # fmt: skip
        it = iter(train_dataset(cfg, tokenizer, 4, seed=0))
        return [{k: np.asarray(v) for k, v in next(it).items()} for _ in range(4)]

    local = batches(f"{tmp_path}/train-{{000..001}}.tar")
    for spec in (f"gs://{BUCKET}/shards/train-{{000..001}}.tar", f"gs://{BUCKET}/shards/*.tar"):
        for a, b in zip(local, batches(spec), strict=True):
            for k in a:
                np.testing.assert_array_equal(a[k], b[k], err_msg=f"{spec} {k}")
