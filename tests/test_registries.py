"""Registries and the task contract: a new data source is one opener + ``@register_source``
(a toy one here, trained from through the public decorator only), unknown names are config
errors listing the known ones, and every shipped task implements ``mmjax.tasks.base.Task``."""

from __future__ import annotations

import json
from typing import Any

import ml_collections
import numpy as np
import pytest

from mmjax.config import ConfigError
from mmjax.data.sources import is_shapes_world, parse_spec, register_source
from mmjax.data.sources.records import SourceError
from mmjax.data.synthetic import COLOURS, SHAPES
from mmjax.registry import Registry
from mmjax.tasks import TASKS, BatchLossTask, Task, build_task

# A tiny in-memory data set: one solid-colour image per (colour, shape) caption.
TOY = [(colour, shape) for colour in list(COLOURS)[:4] for shape in SHAPES]  # 16 records
OPENED: list[tuple[str, str]] = []  # (arg, split) of every open: proves the trainer used it


@register_source("toy_list", own_eval_split=True)
def open_toy_list(arg: str, data_cfg: Any, split: str) -> list[dict[str, Any]]:
    """``toy_list:N``: N records for training, the first half of them for eval."""
    OPENED.append((arg, split))
    n = int(arg) if split == "train" else int(arg) // 2
    size = data_cfg.image_size
    return [
        {
            "image": np.full((size, size, 3), COLOURS[colour], np.uint8),
            "caption": f"a {colour} {shape}",
            "label": i,
        }
        for i, (colour, shape) in enumerate(TOY[:n])
    ]


def test_registry_registers_gets_and_names_the_known_on_a_miss():
    reg: Registry[int] = Registry("widget")
    assert reg.register("b")(2) == 2 and reg.register("a")(1) == 1
    assert reg.get("a") == 1 and reg.names() == ["a", "b"] and "b" in reg
    want = r"config.x.kind: unknown widget 'c'; known: \['a', 'b'\]"
    with pytest.raises(ConfigError, match=want):
        reg.get("c", key="config.x.kind")
    with pytest.raises(ValueError, match="already registered"):
        reg.register("a")(3)


def test_unknown_task_and_source_name_the_key_and_list_the_registered():
    from mmjax import config as config_lib
    from tests.conftest import CONFIG

    config = config_lib.load_config(f"{CONFIG}:tiny")
    config.task.name = "segmentation"
    want = r"config.task.name: unknown task 'segmentation'.*itm_mlm"
    with pytest.raises(ConfigError, match=want):
        build_task(config)
    with pytest.raises(SourceError, match=r"unknown source 'nope:x'.*'synthetic', 'tfds:\.\.\.'"):
        parse_spec("nope:x")
    assert parse_spec("toy_list:8") == ("toy_list", "8")
    with pytest.raises(SourceError, match="unknown source 'toy_list'"):
        parse_spec("toy_list")  # the toy source needs its ':N'


def test_every_shipped_task_implements_the_protocol():
    assert TASKS.names() == [
        *("caption", "classify", "contrastive", "itm_mlm", "text_to_image", "vqvae")
    ]
    for name in TASKS.names():
        cls = TASKS.get(name)
        assert issubclass(cls, Task) and not cls.__abstractmethods__, name
    # exact accumulation (forward + loss_from_outputs) only where the loss couples the batch
    exact = {n for n in TASKS.names() if issubclass(TASKS.get(n), BatchLossTask)}
    assert exact == {"caption", "contrastive"}


def test_train_the_default_tiny_config_from_a_registered_toy_source(tiny_config, tmp_path):
    from mmjax.train.loop import train

    OPENED.clear()
    tiny_config.data.source = "toy_list:16"
    tiny_config.data.eval_source = ""  # the toy source's own eval split
    tiny_config.train.update(
        steps=3, batch_size=8, eval_batch_size=8, log_every=3, eval_every=3, checkpoint_every=3
    )
    result = train(tiny_config, tmp_path / "run")
    assert ("16", "train") in OPENED and ("16", "eval") in OPENED
    assert np.isfinite(result["loss"]) and 0.0 <= result["eval/i2t_r1"] <= 1.0
    rows = [json.loads(x) for x in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert rows[-1]["step"] == 3


def test_the_task_owns_its_tokenizer_and_checks_it_against_the_model(tiny_config):
    """The trainer asks the task (``task.tokenizer``): loaded at the text tower's length,
    and a tokenizer larger than ``model.text.vocab_size`` is a config error naming it."""
    task = build_task(tiny_config)
    ids, _ = task.tokenizer(["a red circle"])
    assert ids.shape == (1, tiny_config.model.text.context_length)
    tiny_config.model.text.vocab_size = 8  # the shipped synthetic tokenizer has more
    with pytest.raises(ConfigError, match=r"config.model.text.vocab_size is 8, but tokenizer"):
        _ = build_task(tiny_config).tokenizer


def test_shapes_world_follows_the_split_that_is_read():
    """Tasks derive synthetic answers / references / zero-shot classes from a source's
    declared ``shapes_world`` of the split they read, not from the training source's name."""

    def cfg(**kw: str) -> ml_collections.ConfigDict:
        return ml_collections.ConfigDict(dict(dict(source="synthetic", eval_source=""), **kw))

    assert is_shapes_world(cfg(), "train") and is_shapes_world(cfg(), "eval")
    real_train = cfg(source="files:/data/train.jsonl", eval_source="synthetic")
    assert not is_shapes_world(real_train, "train") and is_shapes_world(real_train, "eval")
    real_eval = cfg(eval_source="files:/data/val.jsonl")
    assert is_shapes_world(real_eval, "train") and not is_shapes_world(real_eval, "eval")
