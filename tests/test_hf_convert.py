"""`mmjax convert` both ways: HF directory -> orbax checkpoint -> HF directory."""

from __future__ import annotations

import json

import jax
import numpy as np
import pytest

import mmjax.hf
from mmjax.cli.app import main
from tests.hf_reference import FIXTURES


@pytest.mark.parametrize("name", ["clip-pt", "resnet-pt", "vit-pt"])
def test_convert_roundtrip(tmp_path, name, capsys):
    ckpt, back = tmp_path / "ckpt", tmp_path / "hf"
    assert main(["convert", "--hf", str(FIXTURES / name), "--out", str(ckpt)]) == 0
    assert (ckpt / "variables").is_dir() and (ckpt / "hf_config.json").is_file()
    assert main(["convert", "--ckpt", str(ckpt), "--to-hf", str(back)]) == 0
    assert "wrote" in capsys.readouterr().out
    module, variables = mmjax.hf.load(FIXTURES / name)
    again, reloaded = mmjax.hf.load(back)
    assert again == module
    for a, b in zip(jax.tree.leaves(variables), jax.tree.leaves(reloaded), strict=True):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    arch = json.loads((FIXTURES / name / "config.json").read_text())["architectures"]
    assert json.loads((back / "config.json").read_text())["architectures"] == arch


def test_convert_errors_are_reported(tmp_path, capsys):
    assert main(["convert", "--hf", str(FIXTURES / "clip-pt")]) == 2
    assert "needs --out" in capsys.readouterr().err
    # Exit codes by kind (mmjax.errors): 2 usage, 10 a file that is not there.
    assert main(["convert", "--ckpt", str(tmp_path), "--to-hf", str(tmp_path / "x")]) == 10
    assert "neither an `mmjax convert --hf` output" in capsys.readouterr().err
    assert main(["convert", "--hf", str(tmp_path / "absent"), "--out", str(tmp_path)]) == 10
    assert "allow_network" in capsys.readouterr().err


def test_finetune_run_exports_to_transformers(tmp_path):
    """A (2-step) run of configs/clip_hf_finetune.py exports with convert --ckpt."""
    import orbax.checkpoint as ocp

    from tests.conftest import REPO
    from tests.hf_reference import images, max_diff, text_batch, to_torch, torch_model

    workdir, out = tmp_path / "run", tmp_path / "hf"
    overrides = dict(steps=2, batch_size=8, eval_batch_size=8, log_every=1, eval_every=0)
    argv = ["train", "--config", f"{REPO}/configs/clip_hf_finetune.py:{FIXTURES / 'clip-pt'}"]
    argv += ["--workdir", str(workdir), "--config.optim.warmup_steps=1"]
    argv += ["--config.data.eval_records=8"]
    argv += [f"--config.train.{k}={v}" for k, v in overrides.items()]
    assert main(argv) == 0
    assert main(["convert", "--ckpt", str(workdir), "--to-hf", str(out)]) == 0
    import torch

    reloaded = torch_model("CLIPModel", out)
    module, variables = mmjax.hf.load(out)
    state = ocp.PyTreeCheckpointer().restore(workdir / "checkpoints" / "2" / "state")
    trained = state["params"]["image_proj"]["kernel"]
    np.testing.assert_array_equal(variables["params"]["image_proj"]["kernel"], trained)
    px = images()
    ids, mask = text_batch(eos=3)
    with torch.no_grad():
        ref = reloaded.get_image_features(pixel_values=to_torch(px, nchw=True))
    assert max_diff(ref, module.apply(variables, px, method="encode_image")) <= 1e-5
    assert ids.shape == mask.shape
