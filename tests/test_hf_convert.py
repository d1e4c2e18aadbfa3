"""`mmjax convert` both ways: HF directory -> orbax checkpoint -> HF directory."""

from __future__ import annotations

import json

import jax
import numpy as np
import pytest

import mmjax.hf
from mmjax.cli import main
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
    assert main(["convert", "--ckpt", str(tmp_path), "--to-hf", str(tmp_path / "x")]) == 2
    assert "not an `mmjax convert --hf` output" in capsys.readouterr().err
    assert main(["convert", "--hf", str(tmp_path / "absent"), "--out", str(tmp_path)]) == 2
    assert "allow_network" in capsys.readouterr().err
