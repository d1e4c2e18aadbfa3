"""The task contract: what the trainer, the evaluators and the AOT compiler ask of a task.

A task is the model (a Flax module from ``mmjax.models``) + its loss + its eval, and it owns
its data contract: which tokenizer its text uses (``tokenizer``, checked against the model)
and how a record becomes model inputs (``make_example``). The trainer never looks at the
model's kind. Every method below has one meaning; the shapes are per batch:

- ``init(rng)``: the model's boxed (logically partitioned) variables ``{'params': ...}``.
- ``loss(params, batch, rng, train)``: ``(scalar fp32 loss, {name: scalar metric})``.
- ``eval_step(params, batch)``: the eval forward under ``jax.jit``; every output has a
  leading ``[batch]`` axis (the evaluators keep the valid rows and concatenate batches).
- ``eval_metrics(outputs)``: host metrics ``{name: float}`` over the whole eval split's
  ``eval_step`` outputs (numpy).
- ``make_example(data_cfg, train)``: the ``ExampleFn`` ``(record, rng) -> {name: array}``
  (one example, no batch axis) of the data pipeline.
- ``dummy_batch(batch_size)``: zeros shaped like one training batch (for ``init`` and
  abstract shapes); one implementation here, a task adds its own keys in ``dummy_extras``.

Tasks whose loss couples the whole batch (contrastive pairs) derive from ``BatchLossTask``
and split ``loss`` into ``forward`` + ``loss_from_outputs``, which gradient accumulation
(``mmjax.train.accumulate``) uses for the exact big-batch gradient. A task that generates
(captioning) has its own ``generate``; no other task has one.

Optional capabilities are declared class attributes with defaults (``max_logit_scale``,
``inexact_accumulation``, ``buffers``); callers read them, they never probe with ``getattr``.
A task with ``buffers`` (params no gradient trains, such as the VQ-VAE's EMA codebook
statistics) updates them in ``update_buffers`` after each optimizer step.
A new task is one file: a ``Task`` subclass decorated with ``@register_task('name')``
(and imported in ``mmjax/tasks/__init__.py``), selected by ``config.task.name``.
"""

from __future__ import annotations

import abc
import functools
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from mmjax.config import ConfigError
from mmjax.data.pipeline import default_example
from mmjax.data.tokenizer import TextTokenizer, load_tokenizer
from mmjax.data.transforms import ExampleFn
from mmjax.registry import Registry

Batch = dict[str, jax.Array]
Outputs = dict[str, jax.Array]
Metrics = dict[str, jax.Array]

# An image-only model (no config.model.text) never tokenizes, but the pipeline's example
# functions take a tokenizer: it is loaded at this length and left unused.
UNUSED_TEXT_LENGTH = 16

TASKS: Registry[type[Task]] = Registry("task")


def register_task(name: str) -> Any:
    """Class decorator: ``config.task.name = name`` builds this task (``build_task``)."""
    return TASKS.register(name)


def build_task(config: Any) -> Task:
    """The task named by ``config.task.name``, built from the whole config."""
    return TASKS.get(config.task.name, key="config.task.name")(config)


def text_tokenizer(config: Any) -> TextTokenizer:
    """``config.data.tokenizer`` at ``config.model.text.context_length``; a tokenizer with
    more tokens than ``config.model.text.vocab_size`` is a ``ConfigError``."""
    text_cfg = config.model.get("text")
    length = text_cfg.context_length if text_cfg else UNUSED_TEXT_LENGTH
    tokenizer = load_tokenizer(config.data.tokenizer, length)
    if text_cfg and tokenizer.vocab_size > text_cfg.vocab_size:
        raise ConfigError(
            f"config.model.text.vocab_size is {text_cfg.vocab_size}, but tokenizer "
            f"{config.data.tokenizer!r} has {tokenizer.vocab_size} tokens"
        )
    return tokenizer


class Task(abc.ABC):
    """The contract every task implements (see the module docstring)."""

    # Declared capabilities (class or instance attributes):
    max_logit_scale: float | None = None
    """Clamp ``logit_scale`` params into ``[0, max_logit_scale]`` after each update
    (``mmjax.train.temperature``); ``None``: no clamp."""
    inexact_accumulation: str | None = None
    """Why ``optim.accum_steps > 1`` is not the full batch's update (the trainer prints it
    as a warning); ``None``: accumulation is exact (or averages a per-example mean)."""
    buffers: str | None = None
    """Regex (``re.fullmatch`` on ``/``-joined param paths) of params that no gradient
    trains: the trainer freezes them for the optimizer (a ``(buffers, None)`` rule ahead of
    ``config.optim.rules``) and replaces them after each optimizer update with
    ``update_buffers``' values, so they live in the train state and its checkpoints like
    every param. ``None``: no buffers."""
    # The inputs ``dummy_batch`` makes: ``'image'`` uint8 ``[batch, n, n, 3]`` when
    # ``image_size > 0``, ``'tokens'`` int32 / ``'padding_mask'`` bool ``[batch, seq]`` when
    # ``context_length > 0``.
    image_size: int = 0
    context_length: int = 0

    def __init__(self, config: Any):
        self.config = config

    # -- data contract ----------------------------------------------------------------------

    @functools.cached_property
    def tokenizer(self) -> TextTokenizer:
        """The tokenizer of this task's text (``text_tokenizer``), loaded once."""
        return text_tokenizer(self.config)

    def make_example(self, data_cfg: Any, train: bool) -> ExampleFn:
        """``(record, rng) -> {name: array}`` for the pipeline of ``data_cfg`` (the train or
        eval transform by ``train``); default: the image-text example (``default_example``)."""
        return default_example(self.tokenizer, data_cfg, train)

    def dummy_batch(self, batch_size: int = 1) -> Batch:
        """Zeros shaped like a training batch of ``batch_size`` rows: image / text inputs
        (see ``image_size`` / ``context_length``) and the task's ``dummy_extras``."""
        b, n, s = batch_size, self.image_size, self.context_length
        batch: dict[str, Any] = {}
        if n:
            batch["image"] = np.zeros((b, n, n, 3), np.uint8)
        if s:
            batch["tokens"] = np.zeros((b, s), np.int32)
            batch["padding_mask"] = np.ones((b, s), np.bool_)
        batch.update(self.dummy_extras(b))
        return {k: jnp.asarray(v) for k, v in batch.items()}

    def dummy_extras(self, batch_size: int) -> dict[str, Any]:
        """The task's other batch entries (targets, video / audio inputs), as zeros."""
        return {}

    # -- model, loss, eval ------------------------------------------------------------------

    @abc.abstractmethod
    def init(self, rng: jax.Array) -> Any:
        """Boxed (logically partitioned) variables ``{'params': ...}`` from ``dummy_batch``."""

    @abc.abstractmethod
    def loss(
        self, params: Any, batch: Batch, rng: jax.Array, train: bool = True
    ) -> tuple[jax.Array, Metrics]:
        """``(loss, metrics)``: scalar fp32 loss of ``batch`` and scalar metrics; ``rng``
        drives dropout / sampling, ``train=False`` turns dropout off."""

    @abc.abstractmethod
    def eval_step(self, params: Any, batch: Batch) -> Outputs:
        """Eval forward of one batch (jitted): ``{name: [batch, ...]}``."""

    def update_buffers(self, params: Any, batch: Batch) -> Any:
        """New values of the ``buffers`` params, a nested dict of just those leaves, from the
        full params the step's loss saw (before its optimizer update) and the step's whole
        batch (jitted inside the train step). Only called when ``buffers`` is set."""
        raise NotImplementedError(f"{type(self).__name__} declares no buffers")

    def dump_predictions(self, outputs: dict[str, np.ndarray], directory: Any, name: str) -> None:
        """Writes what is worth keeping of an eval's outputs (``eval_step``'s, concatenated)
        under ``directory`` (the trainer's ``WORKDIR/predictions/<step>/``), files named after
        the evaluator ``name``; called on process 0 when ``train.dump_predictions``. Default:
        nothing (two-tower retrievals are written by the evaluator itself)."""
        return None

    def eval_images(self, outputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Pictures of an eval's outputs worth looking at (sample grids): ``{name: uint8
        [H, W, 3]}``. The trainer writes each to TensorBoard as ``eval/[<evaluator>/]<name>``
        at the eval's step; a task may also save them in ``dump_predictions``. Default: none."""
        return {}

    @abc.abstractmethod
    def eval_metrics(self, outputs: dict[str, np.ndarray]) -> dict[str, float]:
        """Metrics of the whole eval split from its concatenated ``eval_step`` outputs."""


class BatchLossTask(Task):
    """A task whose loss is a function of the whole batch's model outputs (contrastive
    pairs): ``loss = loss_from_outputs(forward(...))``, so gradient accumulation can run
    ``forward`` per micro-batch and take the loss over the whole batch (exact)."""

    @abc.abstractmethod
    def forward(self, params: Any, batch: Batch, rng: jax.Array, train: bool = True) -> Outputs:
        """Model outputs the loss needs: per-example ``[batch, ...]`` (accumulation puts
        them back in the batch's row order) or scalars (a temperature)."""

    @abc.abstractmethod
    def loss_from_outputs(self, outputs: Outputs) -> tuple[jax.Array, Metrics]:
        """``(loss, metrics)`` over every row of ``outputs`` (the global batch)."""

    def loss(
        self, params: Any, batch: Batch, rng: jax.Array, train: bool = True
    ) -> tuple[jax.Array, Metrics]:
        return self.loss_from_outputs(self.forward(params, batch, rng, train))
