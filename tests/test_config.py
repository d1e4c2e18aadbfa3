"""Config files, dotted overrides and their errors."""

from __future__ import annotations

import pytest

from mmjax import config as config_lib
from mmjax.cli.app import main
from tests.conftest import CONFIG, REPO


def test_default_config_has_the_documented_keys():
    c = config_lib.load_config()
    for key in (
        "train.steps",
        "train.batch_size",
        "train.seed",
        "train.log_every",
        "train.eval_every",
        "train.checkpoint_every",
    ):
        assert config_lib.has_key(c, key)
    assert set(c.keys()) >= {"model", "data", "optim", "mesh", "train"}


def test_variants():
    assert config_lib.load_config(f"{CONFIG}:siglip").task.loss == "sigmoid"
    assert config_lib.load_config(f"{CONFIG}:tiny").model.image.width == 32
    with pytest.raises(
        config_lib.ConfigError,
        match="clip_synthetic.py: unknown variant .nope.; known: siglip, tiny",
    ):
        config_lib.load_config(f"{CONFIG}:nope")


def test_overrides_parse_to_the_existing_type():
    c = config_lib.load_config()
    c = config_lib.apply_overrides(
        c, ["train.steps=7", "optim.lr=1", "model.dtype=bfloat16", "model.logit_bias_init=-10"]
    )
    assert c.train.steps == 7 and isinstance(c.train.steps, int)
    assert c.optim.lr == 1.0 and isinstance(c.optim.lr, float)
    assert c.model.dtype == "bfloat16"
    assert c.model.logit_bias_init == -10


def test_unknown_key_is_an_error_naming_it():
    c = config_lib.load_config()
    with pytest.raises(
        config_lib.ConfigError,
        match=r"unknown config key 'train\.stpes'.*"
        r"did you mean 'train\.steps'",
    ):
        config_lib.apply_overrides(c, ["train.stpes=3"])
    with pytest.raises(config_lib.ConfigError, match="unknown config key 'nosuch.key'"):
        config_lib.apply_overrides(c, ["nosuch.key=3"])


def test_bad_values_are_errors_naming_the_key():
    c = config_lib.load_config()
    with pytest.raises(config_lib.ConfigError, match="train.steps"):
        config_lib.apply_overrides(c, ["train.steps=many"])
    with pytest.raises(config_lib.ConfigError, match="is a section"):
        config_lib.apply_overrides(c, ["train=3"])


def test_missing_file_and_missing_key(tmp_path):
    with pytest.raises(config_lib.ConfigError, match="does not exist"):
        config_lib.load_config(tmp_path / "nope.py")
    bad = tmp_path / "bad.py"
    bad.write_text(
        "import ml_collections\n"
        "def get_config():\n    return ml_collections.ConfigDict({'model': {}})\n"
    )
    with pytest.raises(config_lib.ConfigError, match="missing required key 'data'"):
        config_lib.load_config(bad)


def test_cli_reports_unknown_key(capsys):
    assert main(["train", "--config.train.stpes=3"]) == 2
    err = capsys.readouterr().err
    assert "unknown config key 'train.stpes'" in err


def test_cli_info(capsys):
    assert main(["info", "--config", f"{CONFIG}:tiny"]) == 0
    out = capsys.readouterr().out
    assert "jax " in out and "total" in out and "image" in out


CONFIGS = sorted(p.name for p in (REPO / "configs").glob("*.py"))
NEEDS_ARG = {"clip_hf_finetune.py", "lit_dinov2.py"}  # take a Hugging Face model directory


@pytest.mark.parametrize("name", [c for c in CONFIGS if c not in NEEDS_ARG])
def test_every_shipped_config_builds_its_task(name):
    """Each config (and its ``tiny`` variant) loads, names a known task, and that task's
    params can be shaped (``jax.eval_shape``: nothing is allocated or compiled)."""
    import jax

    from mmjax.tasks import build_task

    variants = [""] + (["tiny"] if "tiny" in (REPO / "configs" / name).read_text() else [])
    for variant in variants:
        config = config_lib.load_config(f"{REPO / 'configs' / name}:{variant}".rstrip(":"))
        shapes = jax.eval_shape(build_task(config).init, jax.random.PRNGKey(0))
        assert jax.tree.leaves(shapes), name
