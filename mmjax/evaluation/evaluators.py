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
the host (retrieval in chunks on the device, ``mmjax.evaluation.retrieval``). With a dump directory
(the trainer's ``WORKDIR/predictions/<step>/``, ``config.train.dump_predictions``) a
two-tower evaluator writes its predictions, each image's top-5 captions with scores, to
``<name>.jsonl`` (``eval.jsonl`` for the default evaluator).
"""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jax
import ml_collections
import numpy as np
from jax.experimental import multihost_utils

from mmjax.config import ConfigError
from mmjax.data.pipeline import eval_batches
from mmjax.evaluation.retrieval import topk_chunked
from mmjax.parallel import sharding
from mmjax.tasks import build_task

ImageSink = Callable[[str, np.ndarray], None]  # (tag, uint8 [H, W, 3]): e.g. TensorBoard

NAME = re.compile(r"^[A-Za-z0-9_.-]+$")
PREDICTION_TOP_K = 5


def embed_outputs(
    eval_fn: Any, params: Any, batches: list[dict[str, np.ndarray]], mesh: jax.sharding.Mesh
) -> dict[str, np.ndarray]:
    """``eval_fn`` over every eval batch on the mesh: its outputs for the valid rows, in
    order, concatenated on the host."""
    outputs: dict[str, list[np.ndarray]] = {}
    for batch in batches:
        valid = batch["valid"]
        inputs = sharding.global_batch({k: v for k, v in batch.items() if k != "valid"}, mesh)
        out = eval_fn(params, inputs)
        valid_all = np.asarray(multihost_utils.process_allgather(valid))
        for key, value in out.items():
            outputs.setdefault(key, []).append(np.asarray(value)[valid_all.reshape(-1)])
    return {k: np.concatenate(v) for k, v in outputs.items()}


def evaluate(
    task: Any,
    eval_fn: Any,
    params: Any,
    batches: list[dict[str, np.ndarray]],
    mesh: jax.sharding.Mesh,
) -> dict[str, float]:
    """Embeds every eval batch on the mesh and computes the task's metrics on the host."""
    return task.eval_metrics(embed_outputs(eval_fn, params, batches, mesh))


def retrieval_predictions(
    outputs: dict[str, np.ndarray], captions: list[str], k: int = PREDICTION_TOP_K
) -> list[dict[str, Any]]:
    """Per eval image (first row of each ``image_id``) its top-``k`` captions by cosine:
    ``{'image_id', 'captions': [{'row', 'text', 'score', 'right'}], 'right_rows'}``."""
    image_ids = outputs.get("image_id", np.arange(len(outputs["image"])))
    ids, first = np.unique(image_ids, return_index=True)
    idx, scores = topk_chunked(outputs["image"][first], outputs["text"], k)
    rows = []
    for image_id, top, score in zip(ids, idx, scores, strict=True):
        right = np.flatnonzero(image_ids == image_id)
        rows.append(
            {
                "image_id": int(image_id),
                "captions": [
                    {
                        "row": int(j),
                        "text": captions[j],
                        "score": float(s),
                        "right": bool(j in right),
                    }
                    for j, s in zip(top, score, strict=True)
                ],
                "right_rows": right.tolist(),
            }
        )
    return rows


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
    """One eval set: its task (built from its config), jitted ``eval_step`` and host batches."""

    name: str
    task: Any
    eval_fn: Any
    batches: list[dict[str, np.ndarray]]
    keep: tuple[str, ...] = ()
    tokenizer: Any = None

    @property
    def prefix(self) -> str:
        return f"eval/{self.name}/" if self.name else "eval/"

    def run(
        self,
        params: Any,
        mesh: jax.sharding.Mesh,
        dump_dir: Path | None = None,
        on_image: ImageSink | None = None,
    ) -> dict[str, float]:
        """``{'eval/[name/]metric': value}``; with ``dump_dir`` a two-tower evaluator also
        writes its top-k retrievals to ``dump_dir/<name or 'eval'>.jsonl``, and every task
        its own files (``Task.dump_predictions``); ``on_image(tag, uint8 [H, W, 3])`` gets
        each of the task's ``eval_images``, tagged ``eval/[name/]<image name>``."""
        outputs = embed_outputs(self.eval_fn, params, self.batches, mesh)
        metrics = self.task.eval_metrics(outputs)
        if on_image is not None:
            for key, image in self.task.eval_images(outputs).items():
                on_image(self.prefix + key, image)
        two_tower = {"image", "text"} <= set(outputs)
        if dump_dir is not None and two_tower and self.tokenizer is not None:
            if jax.process_count() == 1:  # the batches hold this process's rows only
                tokens = np.concatenate([b["tokens"][b["valid"]] for b in self.batches])
                captions = self.tokenizer.decode(tokens)
            else:
                captions = [None] * len(outputs["text"])
            rows = retrieval_predictions(outputs, captions)
            dump_dir.mkdir(parents=True, exist_ok=True)
            path = dump_dir / f"{self.name or 'eval'}.jsonl"
            path.write_text("".join(json.dumps(r) + "\n" for r in rows))
        if dump_dir is not None:
            self.task.dump_predictions(outputs, dump_dir, self.name or "eval")
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
    mesh: jax.sharding.Mesh,
    param_shardings: Any = None,
) -> list[Evaluator]:
    """The run's evaluators; ``param_shardings`` (the train state's) fix the params' layout
    in the jitted ``eval_step`` (``None``: as the params come)."""
    out = []
    for name, sub, keep in evaluator_configs(config):
        sub_task = build_task(sub)
        batch_sharding = sharding.batch_sharding(mesh, sharding.logical_rules(config.mesh))
        in_shardings = (param_shardings, batch_sharding) if param_shardings is not None else None
        kwargs = {} if in_shardings is None else {"in_shardings": in_shardings}
        eval_fn = jax.jit(sub_task.eval_step, out_shardings=sharding.replicated(mesh), **kwargs)
        tokenizer = sub_task.tokenizer
        batches = eval_batches(
            sub.data,
            tokenizer,
            sub.train.eval_batch_size,
            example=sub_task.make_example(sub.data, train=False),
        )
        out.append(Evaluator(name, sub_task, eval_fn, batches, keep, tokenizer))
    return out


def run_evaluators(
    evaluators: list[Evaluator],
    params: Any,
    mesh: jax.sharding.Mesh,
    dump_dir: Path | None = None,
    on_image: ImageSink | None = None,
) -> dict[str, float]:
    """Every evaluator's metrics; predictions to ``dump_dir`` and the tasks' eval images to
    ``on_image`` (process 0 only) when given."""
    row: dict[str, float] = {}
    main = jax.process_index() == 0
    dump = dump_dir if main else None
    for ev in evaluators:
        row.update(ev.run(params, mesh, dump, on_image if main else None))
    return row
