"""A LiT run from the command line with a locked DINOv2 tower loaded from Hugging Face."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np

import mmjax.hf
from mmjax.optim.param_rules import flat_params
from mmjax.train.checkpoint import latest_step_dir, read_state
from tests.conftest import REPO
from tests.hf_reference import write_random_checkpoint


def test_lit_from_dinov2_checkpoint_runs_from_the_command_line(tmp_path):
    hf_dir = tmp_path / "dinov2"
    vision = dict(image_size=24, patch_size=8, hidden_size=16, num_hidden_layers=2)
    config = dict(vision, num_attention_heads=4, mlp_ratio=2, use_swiglu_ffn=True)
    write_random_checkpoint(hf_dir, "Dinov2Model", "Dinov2Config", config)
    cmd = [
        *(sys.executable, "-m", "mmjax.cli", "train"),
        *("--config", f"configs/lit_dinov2.py:{hf_dir},tiny,res=32"),  # 32 px: positions resized
        *("--workdir", str(tmp_path / "lit")),
        *("--config.train.steps=3", "--config.train.checkpoint_every=3"),
        *("--config.train.eval_every=0", "--config.train.log_every=1"),
    ]
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert "init_from hf:" in proc.stdout

    state = read_state(latest_step_dir(tmp_path / "lit"))
    frozen, trained = flat_params(state["frozen"]), flat_params(state["params"])
    _, variables = mmjax.hf.load(hf_dir)
    want = flat_params(variables["params"])
    assert frozen.keys() == want.keys()  # the whole DINOv2 tower, and only it, is locked
    for path, value in want.items():
        np.testing.assert_array_equal(frozen[path], np.asarray(value), err_msg=path)
    assert "image_proj/kernel" in trained and not any(p.startswith("image/") for p in trained)
