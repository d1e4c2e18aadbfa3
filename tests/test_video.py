"""The ViViT video encoder: tubelet patching, positions, inflation from an image tower."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mmjax.models.video import (
    VideoSpec,
    VideoTransformer,
    inflate_image_params,
    inflate_kernel,
    posemb_sincos_1d,
)
from mmjax.models.vision import VisionTransformer, ViTSpec
from mmjax.optim.param_rules import flat_params, unflat_params
from mmjax.train.init_from import match_layer_layout

TOWER = dict(image_size=16, patch_size=8, width=16, depth=2, num_heads=2, mlp_dim=32)


def video_tower(**kw) -> VideoTransformer:
    return VideoTransformer(VideoSpec(**{**TOWER, "num_frames": 4, "tubelet": 2, **kw}))


def init(model, x):
    return jax.tree.map(
        lambda b: b.value if hasattr(b, "value") else b,
        jax.jit(model.init)(jax.random.PRNGKey(0), x),
        is_leaf=lambda b: hasattr(b, "value"),
    )["params"]


def test_tubelets_match_a_numpy_reference():
    """The patch embedding of a clip is, per (t x p x p) tubelet, the flattened pixels times
    the kernel plus the bias: written out with NumPy reshapes."""
    model = video_tower(posemb="sincos", depth=0)
    rng = np.random.default_rng(0)
    video = rng.standard_normal((2, 4, 16, 16, 3)).astype(np.float32)
    params = init(model, video)
    kernel = rng.standard_normal(params["patch_embed"]["kernel"].shape).astype(np.float32)
    bias = rng.standard_normal(16).astype(np.float32)
    params = {**params, "patch_embed": {"kernel": kernel, "bias": bias}}
    _, state = model.apply(
        {"params": params}, video, capture_intermediates=True, mutable=["intermediates"]
    )
    got = np.asarray(state["intermediates"]["patch_embed"]["__call__"][0])
    # [b, T/t, t, H/p, p, W/p, p, c] -> [b, T/t, H/p, W/p, (t p p c)]
    ref = video.reshape(2, 2, 2, 2, 8, 2, 8, 3).transpose(0, 1, 3, 5, 2, 4, 6, 7)
    ref = ref.reshape(2, 2, 2, 2, -1) @ kernel.reshape(-1, 16) + bias
    np.testing.assert_allclose(got, ref, rtol=1e-4, atol=1e-4)


def test_sincos_time_positions_match_the_formula():
    width, length = 8, 5
    pos = np.arange(length)[:, None] / 1e4 ** (np.arange(4) / 3)[None]
    ref = np.concatenate([np.sin(pos), np.cos(pos)], axis=1)
    np.testing.assert_allclose(posemb_sincos_1d(length, width), ref, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("mode", ["average", "central"])
def test_inflated_image_tower_sees_a_still_clip_as_its_frame(mode):
    """An image tower's weights inflated into a joint space-time video tower: a clip of T
    identical frames gives the image tower's output on that frame (averaged inflation);
    with central-frame inflation, only the middle frame of each tubelet counts."""
    image = VisionTransformer(ViTSpec(**TOWER, pool="mean"))
    frame = np.random.default_rng(1).standard_normal((2, 16, 16, 3)).astype(np.float32)
    image_params = init(image, frame)
    video = video_tower(pool="mean")
    clip = np.repeat(frame[:, None], 4, axis=1)
    target = flat_params(init(video, clip))
    source = flat_params(image_params)
    # what init_from loads: every shared path, the patch kernel inflated
    loaded = inflate_image_params(source, target, mode)
    assert loaded["patch_embed/kernel"].shape == target["patch_embed/kernel"].shape
    params = unflat_params({**target, **{k: v for k, v in loaded.items() if k in target}})
    want = image.apply({"params": image_params}, frame)["pooled"]
    if mode == "central":  # other frames of the clip are noise: only t // 2 is seen
        noisy = np.random.default_rng(2).standard_normal(clip.shape).astype(np.float32)
        clip = np.where((np.arange(4) % 2 == 1)[None, :, None, None, None], clip, noisy)
    got = video.apply({"params": params}, clip)["pooled"]
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)


def test_inflate_kernel_layouts():
    k = np.arange(2 * 2 * 3 * 4, dtype=np.float32).reshape(2, 2, 3, 4)
    np.testing.assert_allclose(inflate_kernel(k, 3, "average").sum(0), k, rtol=1e-6)
    central = inflate_kernel(k, 3, "central")
    np.testing.assert_array_equal(central[1], k)
    assert not central[[0, 2]].any()
    with pytest.raises(ValueError, match="init_from_inflate"):
        inflate_kernel(k, 3, "mean")


def test_scan_remat_bf16_trace():
    """Scanned + rematerialized == unrolled (fp32, factorised: both encoders), and a bf16
    joint-attention model differentiates."""
    clip = np.random.default_rng(3).standard_normal((2, 4, 16, 16, 3)).astype(np.float32)
    plain = video_tower(attention="factorised", pool="cls")
    params = init(plain, clip)
    want = jax.jit(plain.apply)({"params": params}, clip)
    scanned = video_tower(attention="factorised", pool="cls", scan_layers=True, remat="full")
    stacked = unflat_params(
        match_layer_layout(flat_params(params), flat_params(init(scanned, clip)))
    )
    got = jax.jit(scanned.apply)({"params": stacked}, clip)
    np.testing.assert_allclose(got["pooled"], want["pooled"], rtol=1e-4, atol=1e-4)
    assert got["tokens"].shape == (2, 2, 16)  # one token per time step

    params = init(video_tower(pool="cls"), clip)
    bf16 = video_tower(pool="cls", dtype=jnp.bfloat16, remat="dots_saveable")

    def loss(p):
        return jnp.sum(bf16.apply({"params": p}, clip)["pooled"].astype(jnp.float32) ** 2)

    out = jax.eval_shape(bf16.apply, {"params": params}, clip)["pooled"]
    assert out.dtype == jnp.bfloat16
    grads = jax.jit(jax.grad(loss))(params)
    assert all(np.isfinite(np.asarray(g)).all() for g in jax.tree.leaves(grads))


def test_bad_clip_shape_names_the_expectation():
    with pytest.raises(ValueError, match="expects"):
        video_tower().init(jax.random.PRNGKey(0), jnp.zeros((1, 3, 16, 16, 3)))


def test_analytic_flops_of_a_one_frame_video_are_the_vits():
    """A one-frame, t = 1 joint video tower is a ViT (sincos positions): same FLOPs; the
    factorised variant counts one spatial pass per time step plus the temporal encoder."""
    import ml_collections

    from mmjax.flops import encoder_forward_flops, video_forward_flops, vit_forward_flops

    image = ml_collections.ConfigDict(dict(**TOWER, pool="mean"))
    video = ml_collections.ConfigDict(dict(**TOWER, pool="mean", num_frames=1, tubelet=1))
    assert video_forward_flops(video) == vit_forward_flops(image)
    video.update(num_frames=8, tubelet=2, attention="factorised", temporal_depth=1)
    embed = 2 * 4 * 8 * 8 * 3 * 16  # one frame's patch embedding: 4 patches of 8x8x3 -> 16
    per_step = vit_forward_flops(image) + embed  # a 2-frame tubelet doubles the embedding
    want = 4 * per_step + encoder_forward_flops(4, 16, 1, 32)
    assert video_forward_flops(video) == want
