"""``mmjax convert``: HF model directory <-> orbax checkpoint of its variables.

``--hf DIR --out CKPT_DIR`` writes ``variables/`` (an orbax checkpoint of
``{'params', ...}``) and ``hf_config.json`` (the HF ``config.json``, which rebuilds
the module). ``--ckpt CKPT_DIR --to-hf DIR`` reads such a directory, or a training
run's checkpoint (its workdir, ``checkpoints/`` or one step directory: the latest
step's params, frozen ones included, and the model from the run's config), and
writes ``config.json`` + ``model.safetensors`` (for a run also its tokenizer and image
processor config: ``run_export``).
"""

from __future__ import annotations

import json
from pathlib import Path

import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp

from mmjax import storage
from mmjax.hf import api, config_map, keymap
from mmjax.hf.hub import resolve
from mmjax.train.checkpoint import latest_step_dir

VARIABLES = "variables"


def hf_to_checkpoint(hf: str | Path, out: str | Path, allow_network: bool = False) -> Path:
    """Loads ``hf`` (directory or cached Hub id) and writes its variables to ``out``."""
    directory = resolve(hf, allow_network=allow_network)
    _, variables = api.load(directory)
    out = storage.as_path(out)  # gs://... too (orbax writes through tensorstore)
    if (out / VARIABLES).exists():
        raise FileExistsError(f"{out / VARIABLES} exists; choose another --out")
    out.mkdir(parents=True, exist_ok=True)
    with ocp.StandardCheckpointer() as ckpt:
        ckpt.save(out / VARIABLES, variables)
    (out / api.HF_CONFIG).write_bytes((directory / "config.json").read_bytes())
    return out


def _run_step_dir(path: Path) -> Path | None:
    """The step directory of a training run's checkpoint at ``path`` (latest step), if any."""
    try:
        step_dir = latest_step_dir(path)
    except FileNotFoundError:
        return None
    return step_dir if (step_dir / "config").is_dir() else None


def run_checkpoint_to_hf(step_dir: Path, hf: str | Path) -> Path:
    """Exports a ``mmjax train`` checkpoint step (two-tower models) as a complete HF
    directory: weights, config, tokenizer and image processor (``run_export.export_run``)."""
    from mmjax.hf.run_export import export_run

    return export_run(step_dir, hf)


def checkpoint_to_hf(ckpt: str | Path, hf: str | Path) -> Path:
    """Writes ``config.json`` + ``model.safetensors`` from a ``hf_to_checkpoint`` output or
    a training run's checkpoint."""
    ckpt = storage.as_path(ckpt)
    if not (ckpt / api.HF_CONFIG).is_file() or not (ckpt / VARIABLES).is_dir():
        step_dir = _run_step_dir(ckpt)
        if step_dir is not None:
            return run_checkpoint_to_hf(step_dir, hf)
        raise FileNotFoundError(
            f"{ckpt} is neither an `mmjax convert --hf` output (needs {api.HF_CONFIG} and "
            f"{VARIABLES}/) nor a training run's checkpoint"
        )
    cfg = json.loads((ckpt / api.HF_CONFIG).read_text())
    with ocp.StandardCheckpointer() as checkpointer:
        variables = checkpointer.restore(ckpt / VARIABLES)
    _, table = config_map.build(cfg, jnp.float32)
    flat = {k: np.asarray(v) for k, v in api.flatten(variables).items()}
    keys = set(keymap.to_hf(flat, table, with_prefix=False))  # which optional parts it has
    module, _ = config_map.build(cfg, jnp.float32, keys)
    return api.save(hf, module, variables)
