"""Resuming safely: the new config against the checkpoint's, and the latest *intact* step.

``check_config_change`` runs before the workdir's ``config.json`` is rewritten. Keys that
only change bookkeeping (``train.steps``, logging, retention, the mesh, data loading
speed) are printed as a note; any other change (lr, batch, seed, data, model) alters the
run that resumes and is an error naming the keys, unless
``config.train.allow_config_change=True``. A model change that alters param shapes is
an error whatever that flag says (``check_shapes``): it names the params.

``restore_latest_intact`` restores the newest step that reads back; a step that does not
(a truncated or partly deleted file, a corrupt iterator state) is moved to
``WORKDIR/checkpoints-unreadable/<step>`` (kept for inspection, out of orbax's way) with a
line saying which step was skipped and why, and the step before it is tried.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jax
import numpy as np
from jax.experimental import multihost_utils

from mmjax.optim.param_rules import flat_params

# Changing these between a run and its resume changes no result of the steps already
# taken nor the meaning of the state: a note is enough.
BOOKKEEPING = (
    "train.steps",
    "train.log_every",
    "train.eval_every",
    "train.checkpoint_every",
    "train.max_checkpoints",
    "train.keep_period",
    "train.best_metric",
    "train.best_mode",
    "train.keep_best",
    "train.nonfinite",
    "train.preemption_sync_every",
    "train.debug_nan_step",
    "train.eval_batch_size",
    "train.allow_config_change",
    "data.num_workers",
    "data.num_threads",
    "data.prefetch",
    "data.max_bad_fraction",
    "data.bad_records",
    "data.eval_",
    "mesh.",
    "model.remat",
    "model.attention_impl",
    "init_from",
)
MAX_NAMED = 8  # keys / params named in one message


class ResumeError(RuntimeError):
    """The workdir's checkpoints cannot be resumed with this config; names keys / params."""


def step_dirs(directory: str | os.PathLike) -> list[int]:
    """The committed-looking step directories (integer names), newest first."""
    path = Path(directory)
    if not path.is_dir():
        return []
    return sorted((int(p.name) for p in path.iterdir() if p.name.isdigit()), reverse=True)


def saved_config(step_dir: str | os.PathLike) -> dict[str, Any] | None:
    """The config a step was saved with (orbax ``JsonSave`` item ``config``), or ``None``."""
    try:
        return json.loads((Path(step_dir) / "config" / "metadata").read_text())
    except (OSError, ValueError):
        return None


def _flat(tree: Any, prefix: str = "") -> dict[str, Any]:
    if not isinstance(tree, dict):
        return {prefix.rstrip("."): tree}
    out: dict[str, Any] = {}
    for key, value in tree.items():
        out.update(_flat(value, f"{prefix}{key}."))
    return out


def config_changes(saved: dict[str, Any], new: dict[str, Any]) -> tuple[list[str], list[str]]:
    """``(changes that alter the run, bookkeeping changes)`` as ``'key: old -> new'``."""
    from mmjax.config_base import added_key_defaults

    old_flat, new_flat = _flat(saved), _flat(new)
    added = added_key_defaults()  # keys the configs gained later, at what their absence meant
    altering, bookkeeping = [], []
    for key in sorted(set(old_flat) | set(new_flat)):
        old, value = old_flat.get(key, "<unset>"), new_flat.get(key, "<unset>")
        if old == value or (key not in old_flat and key in added and added[key] == value):
            continue
        line = f"{key}: {old!r} -> {value!r}"
        (bookkeeping if key.startswith(BOOKKEEPING) else altering).append(line)
    return altering, bookkeeping


def check_config_change(checkpoints: str | os.PathLike, config: Any) -> None:
    """Compares ``config`` with the latest checkpoint's saved config (see the module doc)."""
    from mmjax import config as config_lib

    for step in step_dirs(checkpoints):
        saved = saved_config(Path(checkpoints) / str(step))
        if saved is not None:
            break
    else:
        return
    new = json.loads(config_lib.to_json(config))
    altering, bookkeeping = config_changes(saved, new)
    say = print if jax.process_index() == 0 else (lambda *_: None)
    if bookkeeping:
        say(f"resuming step {step} with changed settings: " + "; ".join(bookkeeping))
    if not altering:
        return
    listed = "; ".join(altering[:MAX_NAMED]) + ("; ..." if len(altering) > MAX_NAMED else "")
    if config.train.get("allow_config_change", False):
        say(f"resuming step {step} with a changed config (allowed): {listed}")
        return
    raise ResumeError(
        f"the checkpoint of step {step} in {checkpoints} was saved with another config: "
        f"{listed}. Pass --config.train.allow_config_change=true to resume with it anyway, "
        "or use another --workdir (config.init_from=OLD_WORKDIR starts from its weights)"
    )


def check_shapes(step_dir: str | os.PathLike, abstract_state: Any) -> None:
    """``ResumeError`` naming the params whose saved shapes differ from ``abstract_state``'s
    (e.g. a changed width); ``OSError`` / ``ValueError`` if the metadata is unreadable."""
    import orbax.checkpoint as ocp

    path = Path(step_dir).absolute() / "state"
    tree = ocp.PyTreeCheckpointer().metadata(path).item_metadata.tree
    saved = {
        f"{part}/{k}": tuple(v.shape)
        for part in ("params", "frozen")
        for k, v in flat_params(tree.get(part) or {}).items()
    }
    want = {
        f"{part}/{k}": tuple(v.shape)
        for part in ("params", "frozen")
        for k, v in flat_params(getattr(abstract_state, part) or {}).items()
    }
    problems = [
        f"{k}: saved {saved[k]}, config {want[k]}"
        for k in sorted(saved.keys() & want.keys())
        if saved[k] != want[k]
    ]
    problems += [f"{k}: not in the checkpoint" for k in sorted(want.keys() - saved.keys())]
    problems += [f"{k}: not in this model" for k in sorted(saved.keys() - want.keys())]
    if problems:
        listed = "; ".join(problems[:MAX_NAMED])
        more = f" (and {len(problems) - MAX_NAMED} more)" if len(problems) > MAX_NAMED else ""
        raise ResumeError(
            f"the checkpoint {step_dir} does not fit this model: {listed}{more}. The model "
            "config changed; use another --workdir (config.init_from=OLD_WORKDIR loads "
            "the params that still fit)"
        )


def _everywhere(ok: bool) -> bool:
    """Whether ``ok`` holds on every process (one decision for all of them)."""
    if jax.process_count() == 1:
        return ok
    flags = multihost_utils.process_allgather(np.asarray(ok, np.int32))
    return bool(np.asarray(flags).all())


def _reason(error: BaseException) -> str:
    first = next((line for line in str(error).splitlines() if line.strip()), "")
    return f"{type(error).__name__}: {first[:300]}"


def restore_latest_intact(
    checkpointer: Any, abstract_state: Any, restore: Callable[[int], Any]
) -> tuple[int, Any] | None:
    """``(step, restore(step))`` for the newest step that restores, or ``None`` when there
    is no step. ``checkpointer`` is a ``mmjax.train.checkpoint.Checkpointer``; unreadable steps
    are moved aside (see the module doc). A shape mismatch is a ``ResumeError``."""
    directory = Path(checkpointer.directory)
    failures: list[str] = []
    while (step := checkpointer.latest_step()) is not None:
        step_dir = directory / str(step)
        error: BaseException | None = None
        try:
            check_shapes(step_dir, abstract_state)
            result = restore(step)
        except ResumeError:
            raise
        except Exception as e:  # noqa: BLE001 - orbax / tensorstore / grain errors vary
            error, result = e, None
        if _everywhere(error is None):
            return step, result
        reason = _reason(error) if error is not None else "unreadable on another process"
        failures.append(f"step {step} ({reason})")
        aside = directory.parent / f"{directory.name}-unreadable" / str(step)
        if jax.process_index() == 0:
            print(
                f"skipping checkpoint step {step}: it does not restore ({reason}); moved to {aside}"
            )
            aside.parent.mkdir(parents=True, exist_ok=True)
            shutil.move(str(step_dir), str(aside))
        if jax.process_count() > 1:
            multihost_utils.sync_global_devices(f"mmjax_skip_step_{step}")
        checkpointer.manager.reload()
    if failures:
        raise ResumeError(
            f"no checkpoint in {directory} restores: "
            + "; ".join(failures)
            + f" (moved to {directory.name}-unreadable/); remove that directory to start over"
        )
    return None
