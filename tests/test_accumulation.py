"""Exact gradient accumulation for the caption task (GradCache for its contrastive part,
token-count-weighted sums for its token loss), and the warning for a task that is not
exact (ITM's hard negatives come from the micro-batch)."""

from __future__ import annotations

import flax.linen as nn
import jax
import numpy as np
import optax
import pytest

from mmjax import config as config_lib
from mmjax.data.pipeline import train_dataset
from mmjax.data.tokenizer import load_tokenizer
from mmjax.optim.param_rules import flat_params
from mmjax.tasks import build_task
from mmjax.train import loop as train_lib
from mmjax.train.accumulate import loss_and_grads
from tests.conftest import REPO

CONFIGS = REPO / "configs"


def test_caption_accumulation_equals_the_full_batch():
    # CoCa: both the contrastive part (GradCache) and the token loss.
    cfg = config_lib.load_config(f"{CONFIGS / 'caption_coca.py'}:tiny")
    task = build_task(cfg)
    params = jax.jit(lambda r: nn.unbox(task.init(r))["params"])(jax.random.PRNGKey(0))
    tokenizer = load_tokenizer(cfg.data.tokenizer, cfg.model.text.context_length)
    batch = next(iter(train_dataset(cfg.data, tokenizer, 16, 0)))
    # Captions of different lengths: a mean of micro-batch token means would differ.
    lengths = batch["padding_mask"].sum(1)
    assert lengths.min() < lengths.max()
    grad_fn = jax.jit(loss_and_grads, static_argnums=(0, 5))
    rng = jax.random.PRNGKey(1)
    loss1, metrics1, grads1 = grad_fn(task, params, {}, batch, rng, 1)
    loss2, metrics2, grads2 = grad_fn(task, params, {}, batch, rng, 2)
    np.testing.assert_allclose(float(loss2), float(loss1), rtol=1e-5)
    norm1, norm2 = float(optax.tree.norm(grads1)), float(optax.tree.norm(grads2))
    np.testing.assert_allclose(norm2, norm1, rtol=1e-5)
    for k in metrics1:
        np.testing.assert_allclose(metrics2[k], metrics1[k], rtol=1e-5, atol=1e-7, err_msg=k)
    flat2 = flat_params(grads2)
    for path, g1 in flat_params(grads1).items():
        np.testing.assert_allclose(flat2[path], g1, atol=1e-5 * norm1, err_msg=path)


def test_itm_warns_at_start_up_that_accumulation_is_not_exact(monkeypatch, capsys, tmp_path):
    class Started(Exception):
        pass

    def stop(*args, **kwargs):
        raise Started

    monkeypatch.setattr(train_lib, "init_train_state", stop)
    cfg = config_lib.apply_overrides(
        config_lib.load_config(f"{CONFIGS / 'itm_mlm_synthetic.py'}:tiny"),
        ["optim.accum_steps=2"],
    )
    with pytest.raises(Started):
        train_lib.train(cfg, tmp_path)
    assert "optim.accum_steps=2 is not exact" in capsys.readouterr().out
    cfg = config_lib.apply_overrides(
        config_lib.load_config(f"{CONFIGS / 'caption_coca.py'}:tiny"), ["optim.accum_steps=2"]
    )
    with pytest.raises(Started):
        train_lib.train(cfg, tmp_path / "caption")
    assert "not exact" not in capsys.readouterr().out
