"""The training loop: sharded init, jitted step, periodic eval, metrics, checkpoints, resume.

Init follows the sharded pattern: ``jax.eval_shape(init)`` gives the state's
shapes and logical axis names, ``mmjax.parallel.sharding`` turns them into
``NamedSharding``s, and ``jax.jit(init, out_shardings=...)`` materializes each
shard where it lives. The step is ``jax.jit`` with explicit in/out shardings
and the state donated. One device is simply a 1-device mesh.

``config.optim.rules`` split the params into a trainable and a frozen subtree
(``mmjax.optim.param_rules``): the state holds both, the step differentiates and updates
only the trainable one, and the optimizer state (and the EMA) covers only it.
"""

from __future__ import annotations

import functools
import re
import time
from pathlib import Path
from typing import Any

import flax.linen as nn
import flax.struct
import jax
import jax.numpy as jnp
import ml_collections
import optax
import tqdm

from mmjax import config as config_lib
from mmjax import storage
from mmjax.data.pipeline import train_dataset
from mmjax.evaluation.evaluators import build_evaluators, evaluate, run_evaluators  # noqa: F401
from mmjax.optim.optimizer import ema_update, make_optimizer
from mmjax.optim.param_rules import ParamPlan, flat_params, make_param_plan, merge_params
from mmjax.parallel import sharding
from mmjax.parallel.compile_report import aot_compile
from mmjax.tasks import Task, build_task
from mmjax.train.accumulate import loss_and_grads
from mmjax.train.checkpoint import BestCheckpointer, Checkpointer
from mmjax.train.faults import FaultMonitor
from mmjax.train.init_from import init_state_from
from mmjax.train.metric_writer import DEFAULT_WRITERS, MetricWriter
from mmjax.train.preemption import StopRequest
from mmjax.train.resume_check import check_config_change, restore_latest_intact
from mmjax.train.run_checks import check_best_metric, check_run_config, eval_metric_names
from mmjax.train.temperature import clamp_logit_scale
from mmjax.train.workdir_lock import WorkdirLock, check_layout


class TrainState(flax.struct.PyTreeNode):
    """``params`` are the trainable params only; ``frozen`` the others (``{}`` when none);
    ``ema`` the EMA of ``params`` (``{}`` when off: empty subtrees keep the state, its
    shardings and its checkpoints the same pytree)."""

    step: jax.Array
    params: Any
    opt_state: Any
    rng: jax.Array
    frozen: Any = flax.struct.field(default_factory=dict)
    ema: Any = flax.struct.field(default_factory=dict)

    def full_params(self, use_ema: bool = False) -> Any:
        """Trainable (or their EMA) and frozen params as one tree, for ``model.apply``."""
        return merge_params(self.ema if use_ema else self.params, self.frozen)


def param_shapes(task: Task) -> dict[str, tuple[int, ...]]:
    """``{'image/encoder/layer_0/...': shape}`` of the task's params, without allocating."""
    abstract = jax.eval_shape(task.init, jax.random.PRNGKey(0))
    return {p: tuple(v.shape) for p, v in flat_params(nn.unbox(abstract)["params"]).items()}


def make_plan(task: Task, optim_cfg: Any) -> ParamPlan:
    """The task's ``ParamPlan`` under ``optim_cfg.rules`` / ``llrd`` / weight decay; the
    task's ``buffers`` (if any) are frozen by a rule ahead of the config's."""
    if task.buffers:
        optim_cfg = ml_collections.ConfigDict(optim_cfg.to_dict())
        optim_cfg.rules = [(task.buffers, None), *optim_cfg.rules]
    return make_param_plan(optim_cfg, param_shapes(task))


def frozen_weights(task: Task, plan: ParamPlan) -> list[str]:
    """The frozen param paths that are not the task's ``buffers`` (those need no init_from)."""
    return [p for p in plan.frozen if not (task.buffers and re.fullmatch(task.buffers, p))]


def init_train_state(
    task: Task,
    tx: optax.GradientTransformation,
    mesh: jax.sharding.Mesh,
    rules: Any,
    seed: int,
    plan: ParamPlan | None = None,
    ema: bool = False,
) -> tuple[TrainState, Any]:
    """Sharded init; returns ``(state, state_shardings)``. Without a plan all params train."""
    init = state_init_fn(task, tx, plan, ema)
    rng = jax.random.PRNGKey(seed)
    with jax.set_mesh(mesh), nn.logical_axis_rules(rules):
        abstract = jax.eval_shape(init, rng)
        shardings = sharding.logical_shardings(abstract, mesh, rules)
        state = jax.jit(lambda r: nn.unbox(init(r)), out_shardings=shardings)(rng)
    return state, shardings


def state_init_fn(
    task: Task, tx: optax.GradientTransformation, plan: ParamPlan | None = None, ema: bool = False
) -> Any:
    """``rng -> TrainState`` with params boxed with their logical axis names (for
    ``jax.eval_shape`` + ``sharding.logical_shardings``; ``nn.unbox`` it to use it)."""

    def init(rng: jax.Array) -> TrainState:
        params_rng, state_rng = jax.random.split(rng)
        params = task.init(params_rng)["params"]  # boxed with logical axis names
        trainable, frozen = plan.split(params) if plan is not None else (params, {})
        return TrainState(
            step=jnp.zeros((), jnp.int32),
            params=trainable,
            opt_state=tx.init(trainable),
            rng=state_rng,
            frozen=frozen,
            ema=jax.tree.map(jnp.copy, trainable) if ema else {},
        )

    return init


def make_train_step(
    task: Task,
    tx: optax.GradientTransformation,
    schedule: Any,
    accum_steps: int = 1,
    ema_decay: float = 0.0,
    debug_nan_step: int = 0,
) -> Any:
    """``(state, batch) -> (state, metrics)``: gradients of the trainable params only (over
    ``accum_steps`` micro-batches), the optimizer update, then the EMA if ``ema_decay``.

    A step whose loss or gradients are not finite keeps the old params, optimizer state
    and EMA (the step counter and RNG still advance) and reports ``nonfinite = 1``.
    ``debug_nan_step = k`` makes step ``k``'s loss and gradients NaN (fault injection).
    A task whose ``max_logit_scale`` is not None gets its ``logit_scale`` params clamped
    into ``[0, max_logit_scale]`` after each update (``mmjax.train.temperature``); a task
    with ``buffers`` gets them (frozen params) replaced by ``task.update_buffers`` of the
    params the loss saw and the whole batch.
    """
    max_logit_scale = task.max_logit_scale

    def train_step(state: TrainState, batch: dict[str, jax.Array]) -> tuple[TrainState, dict]:
        rng, step_rng = jax.random.split(state.rng)
        loss, metrics, grads = loss_and_grads(
            task, state.params, state.frozen, batch, step_rng, accum_steps
        )
        if debug_nan_step:
            poison = jnp.where(state.step + 1 == debug_nan_step, jnp.nan, 1.0)
            loss, grads = loss * poison, jax.tree.map(lambda g: g * poison, grads)
        grad_norm = optax.tree.norm(grads)
        finite = jnp.isfinite(loss) & jnp.isfinite(grad_norm)
        updates, opt_state = tx.update(grads, state.opt_state, state.params)
        params = optax.apply_updates(state.params, updates)
        if max_logit_scale is not None:
            params = clamp_logit_scale(params, max_logit_scale)
        ema = ema_update(state.ema, params, ema_decay) if ema_decay else state.ema

        # A non-finite step leaves the state as it was (selects, so no NaN leaks through).
        def keep_finite(new: Any, old: Any) -> Any:
            return jax.tree.map(lambda n, o: jnp.where(finite, n, o), new, old)

        params, opt_state, ema = keep_finite(
            (params, opt_state, ema), (state.params, state.opt_state, state.ema)
        )
        frozen = state.frozen  # passed through untouched (a locked tower costs nothing)
        if task.buffers:
            seen = merge_params(state.params, state.frozen)
            frozen = keep_finite(merge_params(frozen, task.update_buffers(seen, batch)), frozen)
        metrics = dict(
            metrics,
            loss=loss,
            lr=schedule(state.step),
            grad_norm=grad_norm,
            nonfinite=(~finite).astype(jnp.int32),
        )
        new_state = state.replace(
            step=state.step + 1, params=params, opt_state=opt_state, rng=rng, ema=ema, frozen=frozen
        )
        return new_state, metrics

    return train_step


def train(config: Any, workdir: str | Path) -> dict[str, float]:
    """Trains ``config`` in ``workdir``, resuming from its latest checkpoint if there is one.

    Holds the workdir's lock (``mmjax.train.workdir_lock``) throughout: a second run on the same
    workdir stops before writing anything. Returns the last logged metrics (train and eval).
    """
    with WorkdirLock(workdir):
        check_layout(workdir)
        return _train(config, workdir)


def _train(config: Any, workdir: str | Path) -> dict[str, float]:
    mesh = sharding.make_mesh(config.mesh)
    check_run_config(config, mesh)  # bad numbers fail here, before anything is written
    workdir = storage.user_path(workdir)  # gs://... stays a URI (etils.epath)
    workdir.mkdir(parents=True, exist_ok=True)
    check_config_change(workdir / "checkpoints", config)  # before config.json is replaced
    config_json = config_lib.to_json(config)
    if jax.process_index() == 0:
        (workdir / "config.json").write_text(config_json + "\n")

    rules = sharding.logical_rules(config.mesh)
    task = build_task(config)
    tokenizer = task.tokenizer  # the task's data contract: its tokenizer, checked
    steps = int(config.train.steps)
    plan = make_plan(task, config.optim)
    if jax.process_index() == 0:
        print(plan.table())
    accum_steps = int(config.optim.get("accum_steps", 1))
    if accum_steps < 1 or config.train.batch_size % accum_steps:
        raise config_lib.ConfigError(
            f"config.optim.accum_steps ({accum_steps}) must be >= 1 and divide "
            f"train.batch_size ({config.train.batch_size})"
        )
    inexact = task.inexact_accumulation
    if accum_steps > 1 and inexact and jax.process_index() == 0:
        print(f"warning: optim.accum_steps={accum_steps} is not exact for this task: {inexact}")
    ema_decay = float(config.optim.get("ema_decay", 0.0) or 0.0)
    if not 0.0 <= ema_decay < 1.0:
        raise config_lib.ConfigError(f"config.optim.ema_decay must be in [0, 1), got {ema_decay}")
    tx, schedule = make_optimizer(config.optim, steps, plan)
    state, state_shardings = init_train_state(
        task, tx, mesh, rules, config.train.seed, plan, ema=ema_decay > 0
    )
    data_sharding = sharding.batch_sharding(mesh, rules)

    train_example = task.make_example(config.data, train=True)

    def train_batches(start_step: int = 0) -> Any:
        """The training batches from ``start_step`` on (a random-access pipeline's position
        is a function of the step)."""
        data = config.data
        bs, seed = config.train.batch_size, config.train.seed
        return iter(train_dataset(data, tokenizer, bs, seed, start_step, example=train_example))

    data_iter = train_batches()
    ckpt = Checkpointer(
        workdir / "checkpoints",
        max_to_keep=config.train.max_checkpoints,
        keep_period=int(config.train.get("keep_period", 0) or 0),
    )
    best_metric = config.train.get("best_metric", "")
    best = None
    if best_metric:
        best = BestCheckpointer(
            workdir / "best",
            best_metric,
            config.train.get("best_mode", "max"),
            int(config.train.get("keep_best", 1)),
        )
    faults = FaultMonitor(
        config.train.get("nonfinite", "stop"), config.data.get("max_bad_fraction", 1.0)
    )
    abstract = jax.tree.map(
        lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s), state, state_shardings
    )

    def restore(start: int) -> TrainState:
        nonlocal data_iter
        if ckpt.has_data_state(start):
            return ckpt.restore(start, abstract, data_iter)
        else:
            # Saved by another number of processes: their iterator states do not apply,
            # but a random-access pipeline's position is a function of the step.
            restored = ckpt.restore_state(start, abstract)
            data_iter = train_batches(start)
            return restored

    resumed = restore_latest_intact(ckpt, abstract, restore)  # skips unreadable steps
    if resumed is not None:
        start, state = resumed
        if jax.process_index() == 0:
            print(f"resumed from {ckpt.directory} at step {start}")
    elif config.get("init_from"):
        state = init_state_from(
            state,
            state_shardings,
            plan,
            config.init_from,
            config.get("init_from_dont_load", ()),
            config.get("init_from_inflate", "average"),
        )
    elif frozen_weights(task, plan) and jax.process_index() == 0:
        print("warning: frozen params are randomly initialized (config.init_from is empty)")
    start = int(state.step)
    if start >= steps and jax.process_index() == 0:
        print(
            f"the checkpoint is at step {start} and config.train.steps is {steps}: nothing "
            "to train (raise --config.train.steps to continue this run)"
        )

    stop = StopRequest(config.train.get("preemption_sync_every", 10), finish=ckpt.wait)
    with jax.set_mesh(mesh), nn.logical_axis_rules(rules), stop:
        step_fn = jax.jit(
            make_train_step(
                task,
                tx,
                schedule,
                accum_steps,
                ema_decay,
                int(config.train.get("debug_nan_step", 0) or 0),
            ),
            in_shardings=(state_shardings, data_sharding),
            out_shardings=(state_shardings, sharding.replicated(mesh)),
            donate_argnums=0,
        )
        evaluators = build_evaluators(
            config, mesh, state_shardings.full_params(use_ema=ema_decay > 0)
        )
        writer = MetricWriter(
            workdir,
            config.train.get("writers", DEFAULT_WRITERS),
            config.to_dict(),
            config.train.get("wandb_project", ""),
        )
        if best is not None:  # a typo fails now, not at the first eval
            params = state.full_params(use_ema=ema_decay > 0)
            names: set[str] = set()
            for ev in evaluators:
                found = eval_metric_names(ev.task, ev.eval_fn, params, ev.batches[0], mesh)
                if not found:  # this evaluator's names are unknown: the first eval checks
                    names = set()
                    break
                metrics = {n.removeprefix("eval/") for n in found}
                names |= {ev.prefix + m for m in metrics if not ev.keep or m in ev.keep}
            check_best_metric(best.metric, names)
        last: dict[str, float] = {}
        bar = tqdm.tqdm(
            total=steps,
            initial=start,
            desc="train",
            mininterval=1.0,
            unit="step",
            disable=jax.process_index() != 0,
            dynamic_ncols=True,
        )
        t_last, step_last = time.perf_counter(), start
        pending: list[tuple[int, dict]] = []
        compiled_step, batch_size = None, config.train.batch_size
        for step in range(start + 1, steps + 1):
            local = next(data_iter)
            skipped = local.pop("skipped", None)
            batch = sharding.global_batch(local, mesh, rules)
            if compiled_step is None:  # ahead of time, on the real batch: prints memory/FLOPs
                compiled_step = aot_compile(
                    step_fn, state, batch, config=config, batch_size=batch_size
                )
            state, metrics = compiled_step(state, batch)
            pending.append((step, metrics))
            faults.add(step, metrics, skipped)
            ckpt.check()  # a failed async save (disk full) stops the run at the next step
            bar.update(1)
            preempted = stop.should_stop(step)
            is_last = step == steps or preempted
            every = config.train.checkpoint_every
            if (every and step % every == 0) or is_last:
                faults.check(ckpt)  # before saving: never save a bad state
            if step % max(config.train.log_every, 1) == 0 or is_last:
                faults.check(ckpt)
                # Fetching only here keeps the host ahead of the device between logs.
                host = jax.device_get(pending[-1][1])
                now = time.perf_counter()
                row = {k: float(v) for k, v in host.items()}
                row["steps_per_sec"] = (step - step_last) / (now - t_last)
                row["samples_per_sec"] = row["steps_per_sec"] * config.train.batch_size
                t_last, step_last, pending = now, step, []
                row.update(faults.row())
                last.update(row)
                writer.write(step, row)
                bar.set_postfix(loss=f"{row['loss']:.3f}", sps=f"{row['samples_per_sec']:.0f}")
            eval_now = config.train.eval_every and step % config.train.eval_every == 0
            if eval_now or (is_last and not preempted):
                t0 = time.perf_counter()
                dump = config.train.get("dump_predictions", True)
                eval_row = run_evaluators(
                    evaluators,
                    state.full_params(use_ema=ema_decay > 0),
                    mesh,
                    workdir / "predictions" / str(step) if dump else None,
                    on_image=functools.partial(writer.write_image, step),
                )
                last.update(eval_row)
                writer.write(step, eval_row)
                if jax.process_index() == 0:
                    bar.write(
                        f"step {step}: " + ", ".join(f"{k}={v:.3f}" for k, v in eval_row.items())
                    )
                if best is not None:
                    best.save(step, state.full_params(use_ema=ema_decay > 0), eval_row)
                t_last += time.perf_counter() - t0  # eval time is not training throughput
            if (every and step % every == 0) or is_last:
                with stop.saving():  # a second Ctrl-C here waits for the save
                    ckpt.save(step, state, data_iter, config_json, force=is_last)
            if preempted:
                with stop.saving():
                    ckpt.wait()
                if jax.process_index() == 0:
                    bar.write(f"stopped at step {step} ({stop.signal_name}); checkpoint saved")
                break
        bar.close()
        ckpt.close()
        if best is not None:
            best.close()
        writer.close()
    return last
