"""Orbax checkpoints holding everything needed to resume exactly.

One checkpoint = train state (params, optimizer state, step, RNG key), the
grain iterator state and the config (JSON). Saves are asynchronous: the step
loop waits only for the device-to-host copy.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import grain
import jax
import orbax.checkpoint as ocp

from mmjax import storage

ITEMS = ("state", "data", "config")


class CheckpointSaveError(RuntimeError):
    """An (async) checkpoint save failed, e.g. a full disk; the message names the step kept."""


class Checkpointer:
    """``CheckpointManager`` over ``WORKDIR/checkpoints``: the ``max_to_keep`` most recent
    saves, plus every ``keep_period``-th step forever (0 = none)."""

    def __init__(self, directory: str | Path, max_to_keep: int = 2, keep_period: int = 0):
        self.directory = storage.as_path(directory)
        options = ocp.CheckpointManagerOptions(
            max_to_keep=max_to_keep,
            keep_period=keep_period or None,
            enable_async_checkpointing=True,
            create=True,
        )
        self.manager = ocp.CheckpointManager(self.directory, options=options, item_names=ITEMS)

    def latest_step(self) -> int | None:
        return self.manager.latest_step()

    def save(
        self, step: int, state: Any, data_iterator: Any, config_json: str, force: bool = False
    ) -> bool:
        """Starts an async save of ``step``; returns whether a save was started. A failure
        (of this save, or of the previous one, which orbax reports here) is a
        ``CheckpointSaveError``."""
        try:
            return self._save(step, state, data_iterator, config_json, force)
        except Exception as e:  # noqa: BLE001 - tensorstore / OS errors
            raise self._save_error(e) from e

    def _save(
        self, step: int, state: Any, data_iterator: Any, config_json: str, force: bool
    ) -> bool:
        return self.manager.save(
            step,
            args=ocp.args.Composite(
                state=ocp.args.StandardSave(state),
                data=grain.checkpoint.CheckpointSave(data_iterator),
                config=ocp.args.JsonSave(json.loads(config_json)),
            ),
            force=force,
        )

    def has_data_state(self, step: int) -> bool:
        """Whether ``step`` holds an iterator state for this process and process count
        (grain writes one file per process; a run restored on another topology has none)."""
        name = f"process_{jax.process_index()}-of-{jax.process_count()}.json"
        return (self.directory / str(step) / "data" / name).is_file()

    def restore_state(self, step: int, abstract_state: Any) -> Any:
        """Restores only the train state of ``step`` onto ``abstract_state``."""
        restored = self.manager.restore(
            step, args=ocp.args.Composite(state=ocp.args.StandardRestore(abstract_state))
        )
        return restored.state

    def restore(self, step: int, abstract_state: Any, data_iterator: Any) -> Any:
        """Restores ``step`` onto ``abstract_state`` (``jax.ShapeDtypeStruct`` leaves with
        shardings) and sets ``data_iterator`` to where that step left off."""
        restored = self.manager.restore(
            step,
            args=ocp.args.Composite(
                state=ocp.args.StandardRestore(abstract_state),
                data=grain.checkpoint.CheckpointRestore(data_iterator),
            ),
        )
        return restored.state

    def check(self) -> None:
        """Raises ``CheckpointSaveError`` as soon as an async save has failed (orbax would
        say so only at the next save, in pages of log); the committed steps stay."""
        try:
            self.manager.check_for_errors()
        except Exception as e:  # noqa: BLE001 - tensorstore / OS errors of the save thread
            raise self._save_error(e) from e

    def _save_error(self, error: Exception) -> CheckpointSaveError:
        steps = [int(p.name) for p in self.directory.iterdir() if p.name.isdigit()]
        kept = f"step {max(steps)} is the latest intact one" if steps else "none was kept"
        first = next((ln for ln in str(error).splitlines() if ln.strip()), "")
        return CheckpointSaveError(
            f"saving a checkpoint to {self.directory} failed ({type(error).__name__}: "
            f"{first[:300]}); stopped, checkpoint {kept}"
        )

    def wait(self) -> None:
        self.manager.wait_until_finished()

    def close(self) -> None:
        self.manager.wait_until_finished()
        self.manager.close()


class BestCheckpointer:
    """The ``keep`` best params by an eval metric, in ``WORKDIR/best/<step>/``.

    Kept apart from the resume checkpoints so that keeping the best never deletes
    the latest state a restart needs.
    """

    def __init__(self, directory: str | Path, metric: str, mode: str = "max", keep: int = 1):
        if mode not in ("max", "min"):
            raise ValueError(f"best checkpoint mode must be 'max' or 'min', got {mode!r}")
        self.metric = metric
        self.directory = storage.as_path(directory)
        options = ocp.CheckpointManagerOptions(
            max_to_keep=keep,
            best_fn=lambda metrics: metrics[metric],
            best_mode=mode,
            enable_async_checkpointing=True,
            create=True,
        )
        self.manager = ocp.CheckpointManager(self.directory, options=options)

    def save(self, step: int, params: Any, metrics: dict[str, float]) -> bool:
        """Saves ``params`` if ``metrics[metric]`` ranks among the best so far."""
        if self.metric not in metrics:
            raise KeyError(
                f"best checkpoint metric {self.metric!r} is not among the eval metrics "
                f"{sorted(metrics)}"
            )
        return self.manager.save(
            step, args=ocp.args.StandardSave(params), metrics={self.metric: metrics[self.metric]}
        )

    def best_step(self) -> int | None:
        return self.manager.best_step()

    def close(self) -> None:
        self.manager.wait_until_finished()
        self.manager.close()


def latest_step_dir(path: str | Path) -> Path:
    """The step directory ``path`` names: a step directory itself, or the latest step of a
    run's workdir or of its ``checkpoints/`` directory."""
    path = storage.as_path(path)
    if (path / "state").is_dir():
        return path
    if (path / "checkpoints").is_dir():
        path = path / "checkpoints"
    steps = [int(p.name) for p in path.iterdir() if p.name.isdigit()] if path.is_dir() else []
    if not steps:
        raise FileNotFoundError(
            f"no checkpoint under {path} (expected a run workdir, its checkpoints/ directory "
            "or a step directory)"
        )
    return path / str(max(steps))


def read_state(step_dir: str | Path) -> dict[str, Any]:
    """The saved train state of a step directory as nested dicts of NumPy arrays on the host,
    whatever the mesh and number of processes that wrote it."""
    import numpy as np

    path = storage.as_path(step_dir) / "state"
    checkpointer = ocp.PyTreeCheckpointer()
    tree = checkpointer.metadata(path).item_metadata.tree
    args = jax.tree.map(lambda _: ocp.RestoreArgs(restore_type=np.ndarray), tree)
    return checkpointer.restore(path, restore_args=args)
