"""Eval: the task's metrics on one or several eval sets per run (``config.evals``).

Without ``config.evals`` a run has one evaluator, the task's eval on ``config.data``'s
eval split, whose metrics are ``eval/<metric>``. ``config.evals`` lists several, big_vision
style; each is a dict

    dict(name='imagenet',                          # metrics are eval/imagenet/<metric>
         data=dict(eval_source='folder:/data/val', eval_records=...),   # config.data keys
         task=dict(zeroshot=dict(class_names='imagenet', templates='imagenet')),
         metrics=['zeroshot_acc'])                 # optional: keep only these

``data`` and ``task`` override the run's sections for that evaluator only (unknown keys are
errors naming them). In ``task.zeroshot``, ``class_names='imagenet'`` is the shipped
ImageNet-1k class names and ``templates`` may name a shipped set ('imagenet': CLIP's 80,
'simple_imagenet'). Every evaluator embeds on the device mesh and computes its metrics on
the host (retrieval in chunks on the device, ``mmjax.retrieval``).
"""

from __future__ import annotations

import dataclasses
import re
from typing import Any

import jax
import ml_collections
import numpy as np
from jax.experimental import multihost_utils

from mmjax import sharding
from mmjax.config import ConfigError
from mmjax.data.pipeline import default_example, eval_batches
from mmjax.tasks import build_task

NAME = re.compile(r"^[A-Za-z0-9_.-]+$")


def evaluate(
    task: Any,
    eval_fn: Any,
    params: Any,
    batches: list[dict[str, np.ndarray]],
    mesh: jax.sharding.Mesh,
) -> dict[str, float]:
    """Embeds every eval batch on the mesh and computes the task's metrics on the host."""
    outputs: dict[str, list[np.ndarray]] = {}
    for batch in batches:
        valid = batch["valid"]
        inputs = sharding.global_batch({k: v for k, v in batch.items() if k != "valid"}, mesh)
        out = eval_fn(params, inputs)
        valid_all = np.asarray(multihost_utils.process_allgather(valid))
        for key, value in out.items():
            outputs.setdefault(key, []).append(np.asarray(value)[valid_all.reshape(-1)])
    return task.eval_metrics({k: np.concatenate(v) for k, v in outputs.items()})


def _resolve_zeroshot(config: ml_collections.ConfigDict) -> None:
    """Shipped names in ``task.zeroshot``: ``class_names='imagenet'``, ``templates='imagenet'``."""
    from mmjax.inference import prompts

    zs = config.task.get("zeroshot")
    if not zs:
        return
    if zs.get("class_names") == "imagenet":
        zs.class_names = prompts.imagenet_classnames()
    if isinstance(zs.get("templates"), str):
        zs.templates = prompts.templates(zs.templates)


def _override(section: ml_collections.ConfigDict, values: dict, where: str) -> None:
    for key, value in values.items():
        if key not in section:
            raise ConfigError(f"{where}: unknown key {key!r}; known: {sorted(section)}")
        section[key] = value


def evaluator_configs(config: Any) -> list[tuple[str, Any, tuple[str, ...]]]:
    """``[(name, config for that evaluator, metrics to keep or ())]``; name ``''`` is the
    default evaluator (no ``config.evals``)."""
    evals = list(config.get("evals") or [])
    if not evals:
        sub = ml_collections.ConfigDict(config.to_dict(), type_safe=False)
        _resolve_zeroshot(sub)
        return [("", sub, ())]
    out, seen = [], set()
    for i, spec in enumerate(evals):
        spec = dict(spec)
        where = f"config.evals[{i}]"
        name = spec.pop("name", None)
        if not isinstance(name, str) or not NAME.match(name) or name in seen:
            raise ConfigError(f"{where}.name must be a unique [A-Za-z0-9_.-]+ name, got {name!r}")
        seen.add(name)
        sub = ml_collections.ConfigDict(config.to_dict(), type_safe=False)
        _override(sub.data, dict(spec.pop("data", {}) or {}), f"{where}.data")
        _override(sub.task, dict(spec.pop("task", {}) or {}), f"{where}.task")
        metrics = tuple(spec.pop("metrics", ()) or ())
        if spec:
            raise ConfigError(
                f"{where}: unknown keys {sorted(spec)}; known: name, data, task, metrics"
            )
        _resolve_zeroshot(sub)
        out.append((name, sub, metrics))
    return out


@dataclasses.dataclass
class Evaluator:
    """One eval set: its task (built from its config), jitted embed and host batches."""

    name: str
    task: Any
    eval_fn: Any
    batches: list[dict[str, np.ndarray]]
    keep: tuple[str, ...] = ()

    @property
    def prefix(self) -> str:
        return f"eval/{self.name}/" if self.name else "eval/"

    def run(self, params: Any, mesh: jax.sharding.Mesh) -> dict[str, float]:
        metrics = evaluate(self.task, self.eval_fn, params, self.batches, mesh)
        if self.keep:
            missing = sorted(set(self.keep) - set(metrics))
            if missing:
                raise ConfigError(
                    f"config.evals {self.name!r}: metrics {missing} not computed; "
                    f"computed: {sorted(metrics)}"
                )
            metrics = {k: metrics[k] for k in self.keep}
        return {self.prefix + k: v for k, v in metrics.items()}


def build_evaluators(
    config: Any,
    tokenizer: Any,
    mesh: jax.sharding.Mesh,
    param_shardings: Any = None,
) -> list[Evaluator]:
    """The run's evaluators; ``param_shardings`` (the train state's) fix the params' layout
    in the jitted embed (``None``: as the params come)."""
    out = []
    for name, sub, keep in evaluator_configs(config):
        sub_task = build_task(sub)
        make_example = getattr(sub_task, "make_example", None) or default_example
        batch_sharding = sharding.batch_sharding(mesh)
        in_shardings = (param_shardings, batch_sharding) if param_shardings is not None else None
        kwargs = {} if in_shardings is None else {"in_shardings": in_shardings}
        eval_fn = jax.jit(sub_task.embed, out_shardings=sharding.replicated(mesh), **kwargs)
        batches = eval_batches(
            sub.data,
            tokenizer,
            sub.train.eval_batch_size,
            example=make_example(tokenizer, sub.data, train=False),
        )
        out.append(Evaluator(name, sub_task, eval_fn, batches, keep))
    return out


def run_evaluators(
    evaluators: list[Evaluator], params: Any, mesh: jax.sharding.Mesh
) -> dict[str, float]:
    row: dict[str, float] = {}
    for ev in evaluators:
        row.update(ev.run(params, mesh))
    return row
