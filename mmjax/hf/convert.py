"""``mmjax convert``: HF model directory <-> orbax checkpoint of its variables.

``CKPT_DIR`` holds ``variables/`` (an orbax checkpoint of ``{'params', ...}``) and
``hf_config.json`` (the HF ``config.json``, which rebuilds the module).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp

from mmjax.hf import api, config_map, keymap
from mmjax.hf.hub import resolve

VARIABLES = "variables"


def hf_to_checkpoint(hf: str | Path, out: str | Path, allow_network: bool = False) -> Path:
    """Loads ``hf`` (directory or cached Hub id) and writes its variables to ``out``."""
    directory = resolve(hf, allow_network=allow_network)
    _, variables = api.load(directory)
    out = Path(out).absolute()
    if (out / VARIABLES).exists():
        raise FileExistsError(f"{out / VARIABLES} exists; choose another --out")
    out.mkdir(parents=True, exist_ok=True)
    with ocp.StandardCheckpointer() as ckpt:
        ckpt.save(out / VARIABLES, variables)
    shutil.copy(directory / "config.json", out / api.HF_CONFIG)
    return out


def checkpoint_to_hf(ckpt: str | Path, hf: str | Path) -> Path:
    """Writes the ``config.json`` + ``model.safetensors`` of a ``hf_to_checkpoint`` output."""
    ckpt = Path(ckpt).absolute()
    if not (ckpt / api.HF_CONFIG).is_file() or not (ckpt / VARIABLES).is_dir():
        raise FileNotFoundError(
            f"{ckpt} is not an `mmjax convert --hf` output (needs {api.HF_CONFIG} and {VARIABLES}/)"
        )
    cfg = json.loads((ckpt / api.HF_CONFIG).read_text())
    with ocp.StandardCheckpointer() as checkpointer:
        variables = checkpointer.restore(ckpt / VARIABLES)
    _, table = config_map.build(cfg, jnp.float32)
    flat = {k: np.asarray(v) for k, v in api.flatten(variables).items()}
    keys = set(keymap.to_hf(flat, table, with_prefix=False))  # which optional parts it has
    module, _ = config_map.build(cfg, jnp.float32, keys)
    return api.save(hf, module, variables)
