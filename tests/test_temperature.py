"""The temperature cap: open_clip clamps the logit_scale *parameter* into [0, log 100]
after each optimizer step and runs the forward unclamped, so the gradient never dies."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mmjax import config as config_lib
from mmjax.losses import softmax_contrastive_loss
from mmjax.train.init_from import load_checkpoint_params
from mmjax.train.loop import train
from mmjax.train.temperature import MAX_LOGIT_SCALE, clamp_logit_scale
from tests.conftest import CONFIG
from tests.test_losses import _embeddings, softmax_reference

QUICK = ["train.eval_every=0", "train.log_every=1", "train.checkpoint_every=0"]


@pytest.mark.parametrize("log_scale", [MAX_LOGIT_SCALE, 4.8])
def test_gradient_at_and_above_the_cap_is_the_unclamped_formulas(log_scale):
    # Unrelated embeddings: a lower temperature scale lowers the loss, so d loss / d s > 0.
    img, txt = _embeddings(n=8, d=5, seed=3)
    txt = np.roll(txt, 3, axis=0)
    grad = jax.grad(lambda s: softmax_contrastive_loss(img, txt, s)[0])(jnp.float32(log_scale))
    h = 1e-4  # central difference of the NumPy formula, in float64
    want = (
        softmax_reference(img, txt, log_scale + h) - softmax_reference(img, txt, log_scale - h)
    ) / (2 * h)
    assert want > 0.1
    np.testing.assert_allclose(float(grad), want, rtol=1e-3)


def test_clamp_touches_only_logit_scale_leaves():
    params = {
        "logit_scale": jnp.float32(4.8),
        "logit_bias": jnp.float32(9.0),
        "text": {"logit_scale": jnp.float32(-1.0), "kernel": jnp.full((2,), 7.0)},
    }
    out = clamp_logit_scale(params)
    assert float(out["logit_scale"]) == pytest.approx(math.log(100.0))
    assert float(out["text"]["logit_scale"]) == 0.0
    assert float(out["logit_bias"]) == 9.0
    np.testing.assert_array_equal(out["text"]["kernel"], [7.0, 7.0])


def test_a_run_started_above_the_cap_is_clamped_and_can_come_back(tmp_path):
    cfg = config_lib.apply_overrides(
        config_lib.load_config(f"{CONFIG}:tiny"),
        ["train.steps=3", "model.logit_scale_init=4.8", *QUICK],
    )
    train(cfg, tmp_path)
    saved = float(load_checkpoint_params(tmp_path / "checkpoints")["logit_scale"])
    # Clamped to log 100 after step 1; at random init the pairs are unrelated, so the
    # (non-zero) gradient then pulls the scale below the cap. With the old forward clamp
    # the gradient was 0 above the cap and the parameter stayed at 4.8.
    assert 0.0 <= saved < MAX_LOGIT_SCALE
