"""A new fusion kind is one class + one registration: a toy kind registered here, through
the public decorator only, trains and evaluates a tiny fused config end to end."""

from __future__ import annotations

import dataclasses
import json

import flax.linen as nn
import jax.numpy as jnp
import numpy as np
import pytest

from mmjax import config as config_lib
from mmjax.config import ConfigError
from mmjax.models.fusion.common import Fused, Modalities, VectorFusionSpec
from mmjax.models.heads import dense
from mmjax.models.kinds import FUSIONS, register_fusion
from mmjax.models.spec import SpecModule
from tests.conftest import REPO


@dataclasses.dataclass(frozen=True, kw_only=True)
class ToySumSpec(VectorFusionSpec):
    """The toy kind's own option: a scale on the summed projections."""

    scale: float = 1.0


@register_fusion("toy_sum")
class ToySumFusion(SpecModule):
    """``pooled = scale * sum_m Dense_m(pooled_m)``: ``[batch, d_m]`` -> ``[batch, width]``."""

    spec: ToySumSpec

    @nn.compact
    def __call__(self, modalities: Modalities, *, deterministic: bool = True) -> Fused:
        parts = [
            dense(self.width, (None, "embed"), self.dtype, f"proj_{name}")(m["pooled"])
            for name, m in modalities.items()
        ]
        return {"pooled": self.scale * jnp.sum(jnp.stack(parts), axis=0)}


def _config(**fusion):
    config = config_lib.load_config(str(REPO / "configs" / "classify_late_concat.py:tiny"))
    config.model.fusion = dict(kind="toy_sum", width=config.model.fusion.width, **fusion)
    return config


def test_registered_kind_is_listed_and_its_spec_checked():
    assert "toy_sum" in FUSIONS.names()
    from mmjax.models.fused import build_fused_model

    model = build_fused_model(_config(scale=0.5).model)
    assert isinstance(model.fusion, ToySumFusion) and model.fusion.scale == 0.5
    with pytest.raises(ConfigError, match=r"config.model.fusion: unknown keys \['hidden'\]"):
        build_fused_model(_config(hidden=3).model)


def test_toy_fusion_trains_and_evaluates(tmp_path):
    from mmjax.train.loop import train

    config = _config()
    config.train.update(steps=4, eval_every=2, log_every=2, checkpoint_every=4)
    result = train(config, tmp_path)
    rows = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    losses = [r["loss"] for r in rows if "loss" in r]
    assert losses and all(np.isfinite(losses))
    assert [r["step"] for r in rows if "eval/vqa_acc" in r] == [2, 4]
    assert 0.0 <= result["eval/vqa_acc"] <= 1.0
    # the toy kind's params, and only its own, sit under fusion/
    from mmjax.optim.param_rules import flat_params
    from mmjax.train.checkpoint import latest_step_dir, read_state

    state = read_state(latest_step_dir(tmp_path))
    fusion = {p.split("/")[1] for p in flat_params(state["params"]) if p.startswith("fusion/")}
    assert fusion == {"proj_text", "proj_image"}
