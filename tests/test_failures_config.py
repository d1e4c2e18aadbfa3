"""Config values that used to fail late (after a compile and some steps) or never (a
retention key that deleted every checkpoint): each is an error naming its key before the
workdir gets anything."""

from __future__ import annotations

import pytest

from mmjax import config as config_lib
from mmjax.train.loop import train


@pytest.mark.parametrize(
    "override, key",
    [
        ("train.max_checkpoints=0", "config.train.max_checkpoints"),
        ("train.max_checkpoints=-1", "config.train.max_checkpoints"),
        ("train.keep_period=-5", "config.train.keep_period"),
        ("train.keep_best=0", "config.train.keep_best"),
        ("train.checkpoint_every=-1", "config.train.checkpoint_every"),
        ("train.best_mode='maximum'", "config.train.best_mode"),
        ("train.batch_size=0", "config.train.batch_size"),
        ("train.steps=0", "config.train.steps"),
        ("optim.lr=-0.001", "config.optim.lr"),
        ("optim.lr=1e999", "config.optim.lr"),
        ("optim.grad_clip_norm=-1.0", "config.optim.grad_clip_norm"),
        ("model.image.num_heads=3", "config.model.image.num_heads"),
        ("model.text.num_heads=5", "config.model.text.num_heads"),
        ("model.image.patch_size=0", "config.model.image.patch_size"),
        ("model.image.patch_size=64", "config.model.image.patch_size"),
    ],
)
def test_bad_numbers_are_errors_naming_the_key_before_anything_is_written(
    tiny_config, tmp_path, override, key
):
    config = config_lib.apply_overrides(tiny_config, [override])
    with pytest.raises(config_lib.ConfigError, match=key.replace(".", r"\.")):
        train(config, tmp_path)
    assert not (tmp_path / "checkpoints").exists()
    assert not (tmp_path / "config.json").exists()


def test_best_metric_typo_is_an_error_before_the_first_step(tiny_config, tmp_path):
    config = config_lib.apply_overrides(tiny_config, ["train.best_metric=eval/i2t_r01"])
    with pytest.raises(config_lib.ConfigError, match="did you mean 'eval/i2t_r1'"):
        train(config, tmp_path)
    assert not (tmp_path / "metrics.jsonl").exists()  # no step ran
