"""BEiT and DINOv2 (with registers, SwiGLU) against transformers' PyTorch classes.

The tiny checkpoints are written here by ``save_pretrained`` with every parameter
redrawn at random (BEiT initializes its relative-position tables, class token and
positions to zeros, which would hide a wrong index or layout).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import mmjax.hf
from mmjax.hf.config_map import ConfigMapError
from tests.hf_reference import (
    images,
    max_diff,
    require_transformers,
    save_roundtrip,
    to_torch,
    torch_model,
    write_random_checkpoint,
)

TOL = 1e-5
VISION = dict(image_size=24, patch_size=8, hidden_size=16, num_hidden_layers=2)
CASES = {  # name: (transformers class, config kwargs)
    "beit-shared": ("BeitModel", dict(use_shared_relative_position_bias=True)),
    "beit-abs-nomean": (
        "BeitModel",
        dict(
            use_absolute_position_embeddings=True,
            use_relative_position_bias=True,
            use_shared_relative_position_bias=True,
            use_mean_pooling=False,
            layer_scale_init_value=0.0,
        ),
    ),
    "beit-cls": ("BeitForImageClassification", dict(use_relative_position_bias=True, num_labels=3)),
    "dinov2": ("Dinov2Model", dict(mlp_ratio=1.5)),
    "dinov2-swiglu": ("Dinov2Model", dict(use_swiglu_ffn=True, qkv_bias=False)),
    "dinov2-reg": ("Dinov2WithRegistersModel", dict(mlp_ratio=1.5, num_register_tokens=2)),
}
# DINOv2 also at other sizes than the checkpoint's 24 px: positions resized as transformers
# does (up, down, non-square; plain bicubic, and antialiased with registers)
SIZES = {"dinov2": [(24, 24), (40, 40), (16, 16), (32, 48)], "dinov2-reg": [(16, 16), (32, 48)]}
CONFIGS = {"Beit": "BeitConfig", "Dinov2": "Dinov2Config"}
CONFIGS["Dinov2WithRegisters"] = "Dinov2WithRegistersConfig"


def write_checkpoint(directory, cls: str, kwargs: dict) -> None:
    family = cls.removesuffix("Model").removesuffix("ForImageClassification")
    extra = {"intermediate_size": 24} if "Beit" in cls else {}
    config = dict(VISION, num_attention_heads=4, **extra, **kwargs)
    write_random_checkpoint(directory, cls, CONFIGS[family], config)


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    root = tmp_path_factory.mktemp("beit_dinov2")
    for name, (cls, kwargs) in CASES.items():
        write_checkpoint(root / name, cls, kwargs)
    return root


def _torch_forward(ref, px: np.ndarray):
    import torch

    with torch.no_grad():
        return ref(pixel_values=to_torch(px, nchw=True))


@pytest.mark.parametrize("name", list(CASES))
def test_matches_transformers(checkpoints, name):
    cls = CASES[name][0]
    ref = torch_model(cls, checkpoints / name)
    module, variables = mmjax.hf.load(checkpoints / name)
    apply = jax.jit(module.apply)
    for hw in SIZES.get(name, [(24, 24)]):
        px = np.random.default_rng(1).normal(size=(2, *hw, 3)).astype(np.float32)
        out = apply(variables, jnp.asarray(px))
        r = _torch_forward(ref, px)
        if cls.endswith("ForImageClassification"):
            assert max_diff(r.logits, out["logits"]) <= TOL
            continue
        assert out["last_hidden_state"].shape == tuple(r.last_hidden_state.shape), hw
        assert max_diff(r.last_hidden_state, out["last_hidden_state"]) <= TOL, hw
        assert max_diff(r.pooler_output, out["pooler_output"]) <= TOL, hw


@pytest.mark.parametrize(
    "name", ["beit-shared", "beit-abs-nomean", "beit-cls", "dinov2-swiglu", "dinov2-reg"]
)
def test_roundtrip_through_transformers(checkpoints, tmp_path, name):
    cls = CASES[name][0]
    # the mask token (masked-image pretraining only) is not kept by mmjax
    original, reloaded, module = save_roundtrip(cls, checkpoints / name, tmp_path, ("mask_token",))
    px = images(size=24)
    a, b = _torch_forward(original, px), _torch_forward(reloaded, px)
    key = "logits" if "For" in cls else "last_hidden_state"
    assert max_diff(getattr(a, key), getattr(b, key).numpy()) == 0.0
    again, reloaded_mm = mmjax.hf.load(tmp_path)
    assert again == module


def test_plain_vit_export_refuses_beit_options(checkpoints, tmp_path):
    module, variables = mmjax.hf.load(checkpoints / "dinov2")
    vit = mmjax.hf.modules.HFViT(module.image, pooler=False)
    with pytest.raises(ConfigMapError, match="save it as BEiT / DINOv2"):
        mmjax.hf.save(tmp_path, vit, variables)


def _loop_relative_index(h: int, w: int) -> np.ndarray:
    """BEiT's index written out pair by pair: offset (dy, dx) -> row of the table."""
    n = (2 * h - 1) * (2 * w - 1) + 3
    index = np.zeros((h * w + 1, h * w + 1), np.int64)
    for q in range(h * w):
        for k in range(h * w):
            dy, dx = q // w - k // w, q % w - k % w
            index[q + 1, k + 1] = (dy + h - 1) * (2 * w - 1) + (dx + w - 1)
    index[0, 1:], index[1:, 0], index[0, 0] = n - 3, n - 2, n - 1
    return index


@pytest.mark.parametrize("grid", [(3, 3), (2, 4), (4, 3), (1, 1)])
def test_relative_position_index_against_references(grid):
    from mmjax.models.relpos import relative_position_index

    got = relative_position_index(grid)
    np.testing.assert_array_equal(got, _loop_relative_index(*grid))
    require_transformers()
    from transformers.models.beit.modeling_beit import BeitRelativePositionBias

    hf = BeitRelativePositionBias.generate_relative_position_index
    want = hf.__wrapped__(None, grid) if hasattr(hf, "__wrapped__") else hf(None, grid)
    np.testing.assert_array_equal(got, want.numpy())


def test_relative_position_bias_gathers_the_table_like_transformers():
    transformers = require_transformers()
    import torch
    from transformers.models.beit.modeling_beit import BeitRelativePositionBias

    from mmjax.models.relpos import RelativePositionBias

    grid, heads = (3, 3), 4
    config = transformers.BeitConfig(num_attention_heads=heads)
    ref = BeitRelativePositionBias(config, window_size=grid)
    table = np.random.default_rng(0).normal(size=ref.relative_position_bias_table.shape)
    with torch.no_grad():
        ref.relative_position_bias_table.copy_(torch.from_numpy(table))
        want = ref(grid, dim_size=10).numpy()  # [1, heads, 10, 10]
    params = {"params": {"table": jnp.asarray(table, jnp.float32)}}
    got = RelativePositionBias(grid, heads).apply(params)
    assert got.shape == want.shape == (1, heads, 10, 10)
    assert max_diff(want, got) <= 1e-6
    index = _loop_relative_index(*grid)  # NumPy gather: bias[h, q, k] = table[index[q, k], h]
    np.testing.assert_allclose(np.asarray(got)[0], table[index].transpose(2, 0, 1), atol=1e-6)


@pytest.mark.parametrize("antialias", [False, True])
def test_resize_grid_is_torch_bicubic(antialias):
    require_transformers()
    import torch

    from mmjax.models.resize import resize_grid

    x = np.random.default_rng(0).normal(size=(7, 5, 3)).astype(np.float32)
    for size in [(11, 9), (3, 2), (7, 12)]:
        want = torch.nn.functional.interpolate(
            torch.from_numpy(x).permute(2, 0, 1)[None],
            size=size,
            mode="bicubic",
            align_corners=False,
            antialias=antialias,
        )[0].permute(1, 2, 0)
        got = resize_grid(jnp.asarray(x), size, "bicubic_aa" if antialias else "bicubic")
        assert max_diff(want, got) <= 1e-5, size
