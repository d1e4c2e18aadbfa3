"""Config files, dotted overrides and their errors."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path
from typing import Any

import ml_collections
import pytest

from mmjax import config as config_lib
from mmjax import config_base
from mmjax.cli.app import main
from tests.conftest import CONFIG, REPO


def test_default_config_has_the_documented_keys():
    c = config_lib.load_config()
    for key in config_lib.REQUIRED:  # the sections and train keys the trainer reads
        assert config_lib.has_key(c, key), key
    assert set(c.keys()) >= {"model", "data", "optim", "mesh", "train"}


def test_default_patches_tile_the_shapes_position_grid():
    """Each cell of the synthetic data's position grid is a whole number of patches (at
    least 2x2): patches that cut the cells anywhere left the default unable to learn shape
    (zero-shot shape 0.27 at 64 px / 16 px patches; README, zero-shot findings)."""
    from mmjax.data import synthetic

    cells = 1 + max(row for row, _ in synthetic.POSITIONS.values())
    image = config_lib.load_config().model.image
    patches = image.image_size // image.patch_size
    assert patches % cells == 0 and patches // cells >= 2, (image.image_size, image.patch_size)


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
HF = REPO / "tests" / "fixtures" / "hf"


def known_variants(name: str) -> dict:
    """The ``VARIANTS`` a config file declares (name -> function)."""
    spec = importlib.util.spec_from_file_location(
        f"variants_of_{name[:-3]}", REPO / "configs" / name
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.VARIANTS


@pytest.fixture(scope="module")
def dinov2_dir(tmp_path_factory):
    """A random DINOv2 checkpoint for ``lit_dinov2.py:DIR``."""
    from tests.hf_reference import write_random_checkpoint

    directory = tmp_path_factory.mktemp("dinov2")
    vision = dict(image_size=24, patch_size=8, hidden_size=16, num_hidden_layers=2)
    config = dict(vision, num_attention_heads=4, mlp_ratio=2, use_swiglu_ffn=True)
    write_random_checkpoint(directory, "Dinov2Model", "Dinov2Config", config)
    return directory


def every_arg(name: str, dinov2_dir: Path) -> list[str]:
    """``ARG`` strings covering every variant of ``name``: none, each alone, each with
    ``tiny``; pod.py takes exactly one MODEL and one SLICE; the HF configs a directory."""
    variants = known_variants(name)
    if name == "pod.py":
        models = [v for v in variants if not v.startswith("v")]
        return [f"{m},{s}" for m in models for s in variants if s.startswith("v")]
    args = ["", *variants, *(f"{v},tiny" for v in variants if "tiny" in variants and v != "tiny")]
    first = {"clip_hf_finetune.py": HF / "clip-pt", "lit_dinov2.py": dinov2_dir}.get(name)
    return [",".join(filter(None, (str(first or ""), a))) for a in args]


def load_every_variant(name: str, dinov2_dir: Path) -> dict[str, ml_collections.ConfigDict]:
    configs = {}
    for arg in every_arg(name, dinov2_dir):
        try:
            configs[arg] = config_lib.load_config(f"{REPO / 'configs' / name}:{arg}".rstrip(":"))
        except config_lib.ConfigError as e:
            assert "at most one of" in str(e), (name, arg, e)  # exclusive variants only
    return configs


def reference_table() -> str:
    """The README's "Config reference" section."""
    text = (REPO / "README.md").read_text()
    return text.split("\n## Config reference\n", 1)[1].split("\n## ", 1)[0]


def documented_keys() -> set[str]:
    """Every dotted key named in the first column of the reference table."""
    keys = set()
    for line in reference_table().splitlines():
        if line.startswith("| `"):
            keys.update(re.findall(r"`([a-z_]+(?:\.[a-z_]+)*)(?:\.\*)?`", line.split(" | ")[0]))
    return keys


def dotted(config: Any, prefix: str = "") -> set[str]:
    out = set()
    for key, value in config.items():
        out.add(prefix + key)
        if isinstance(value, (dict, ml_collections.ConfigDict)):
            out |= dotted(value, f"{prefix}{key}.")
    return out


@pytest.mark.parametrize("name", CONFIGS)
def test_every_variant_has_every_base_data_key_and_the_readme_documents_them(name, dinov2_dir):
    base_keys = set(config_base.data())
    documented = documented_keys()
    configs = load_every_variant(name, dinov2_dir)
    assert configs, name
    for arg, config in configs.items():
        keys = set(config.data)
        assert base_keys <= keys, (name, arg, sorted(base_keys - keys))  # no config drifts
        missing = sorted(k for k in keys if f"data.{k}" not in documented)
        assert not missing, f"{name}:{arg}: data keys not in the README table: {missing}"


def test_every_documented_key_exists_in_its_base():
    """A row of the reference table names a key of the base (data / optim / train / mesh:
    the shared sections; model / task: the two-tower base), or of the video / audio data."""
    c = config_base.two_tower()
    config_base.video_data(c, num_frames=8)
    config_base.audio_data(c, max_frames=64)
    have = dotted(c)
    missing = sorted(k for k in documented_keys() if k not in have)
    assert not missing, f"README config reference names keys no base has: {missing}"


def write_config(tmp_path: Path, body: str) -> Path:
    path = tmp_path / "mine.py"
    path.write_text(
        "from mmjax import config_base as base\nfrom mmjax.config import Variants\n"
        "def big(c):\n    c.train.steps = 2 * c.train.steps\n"
        f"{body}"
    )
    return path


def test_variants_apply_in_the_files_order_and_take_options(tmp_path):
    path = write_config(
        tmp_path,
        "VARIANTS = {'tiny': base.two_tower_tiny, 'big': big}\n"
        "def get_config(arg=None):\n"
        "    v = Variants(arg, __file__, VARIANTS, options={'lr': 0.1, 'name': ''})\n"
        "    c = v.apply(base.two_tower())\n"
        "    c.optim.lr = v['lr']\n"
        "    return c\n",
    )
    a = config_lib.load_config(f"{path}:big,tiny")
    b = config_lib.load_config(f"{path}:tiny,big,lr=1")
    assert a.train.steps == b.train.steps == 40  # tiny (20), then big: the file's order
    assert (a.optim.lr, b.optim.lr) == (0.1, 1.0) and isinstance(b.optim.lr, float)
    with pytest.raises(
        config_lib.ConfigError, match=r"mine\.py: unknown variant 'huge'; known: tiny, big"
    ):
        config_lib.load_config(f"{path}:tiny,huge")
    with pytest.raises(
        config_lib.ConfigError, match=r"mine\.py: unknown option 'k'; known: lr, name"
    ):
        config_lib.load_config(f"{path}:k=2")
    with pytest.raises(config_lib.ConfigError, match=r"mine\.py: option lr: cannot parse 'x'"):
        config_lib.load_config(f"{path}:lr=x")


def test_exclusive_variants_and_a_leading_argument(tmp_path):
    path = write_config(
        tmp_path,
        "VARIANTS = {'tiny': base.two_tower_tiny, 'big': big}\n"
        "def get_config(arg=None):\n"
        "    v = Variants(arg, __file__, VARIANTS, exclusive=[VARIANTS], first='DIR')\n"
        "    c = v.apply(base.two_tower())\n"
        "    c.init_from = v.first\n"
        "    return c\n",
    )
    assert config_lib.load_config(f"{path}:/some/dir,tiny").init_from == "/some/dir"
    with pytest.raises(config_lib.ConfigError, match="at most one of tiny, big"):
        config_lib.load_config(f"{path}:/d,tiny,big")
    with pytest.raises(config_lib.ConfigError, match="give DIR first"):
        config_lib.load_config(f"{path}:tiny")


def test_cli_names_the_file_and_the_known_variants(capsys):
    assert (
        main(["info", "--config", f"{REPO / 'configs' / 'caption_coca.py'}:tiny,captionning"]) == 2
    )
    err = capsys.readouterr().err
    assert "caption_coca.py: unknown variant 'captionning'; known: captioning_only, tiny" in err


NEEDS_ARG = {"clip_hf_finetune.py", "lit_dinov2.py"}  # take a Hugging Face model directory


@pytest.mark.parametrize("name", [c for c in CONFIGS if c not in NEEDS_ARG])
def test_every_shipped_config_builds_its_task(name):
    """Each config (and its ``tiny`` variant) loads, names a known task, and that task's
    params can be shaped (``jax.eval_shape``: nothing is allocated or compiled)."""
    import jax

    from mmjax.tasks import build_task

    variants = [""] + (["tiny"] if "tiny" in known_variants(name) else [])
    for variant in variants:
        config = config_lib.load_config(f"{REPO / 'configs' / name}:{variant}".rstrip(":"))
        shapes = jax.eval_shape(build_task(config).init, jax.random.PRNGKey(0))
        assert jax.tree.leaves(shapes), name


def test_a_run_saved_before_keys_joined_the_bases_resumes_unchanged():
    """A checkpoint's config that lacks the keys ``config_base.ADDED_KEYS`` names (configs
    saved before the bases) is no change when they hold the base's value; another value is."""
    import json

    from mmjax.train.resume_check import config_changes

    new = json.loads(config_lib.to_json(config_lib.load_config(f"{CONFIG}:tiny")))
    saved = json.loads(json.dumps(new))
    del saved["data"]["image_processor"], saved["data"]["fields"], saved["train"]["writers"]
    assert config_changes(saved, new)[0] == []
    new["data"]["fields"]["label"] = "my_label"
    assert config_changes(saved, new)[0] == ["data.fields.label: '<unset>' -> 'my_label'"]
    assert set(config_base.added_key_defaults()) == set(config_base.ADDED_KEYS)
