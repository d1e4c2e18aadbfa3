"""Host-side image augmentation (``mmjax.data.augment``) and grain workers (``with_workers``)."""

from __future__ import annotations

import math
import multiprocessing
import time

import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest
from PIL import Image

from mmjax.data.augment import (
    RandomResizedCrop,
    make_image_fn,
    normalize_host,
    random_resized_crop_box,
    resize_shorter_center_crop,
)
from mmjax.data.pipeline import train_dataset
from mmjax.data.tokenizer import TextTokenizer
from mmjax.data.transforms import ImageTextExample, normalize_images
from mmjax.data.workers import with_workers
from tests.conftest import synthetic_data_cfg

SCALE, RATIO = (0.08, 1.0), (3 / 4, 4 / 3)


def _cfg(**kw) -> ml_collections.ConfigDict:
    return ml_collections.ConfigDict({"image_size": 24, **kw})


def _image(h: int, w: int, seed: int = 0) -> np.ndarray:
    """A smooth gradient plus noise, so crops and flips change the pixels."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w]
    base = np.stack([255 * x / w, 255 * y / h, 128 + 0 * x], -1)
    return np.clip(base + rng.normal(0, 20, (h, w, 3)), 0, 255).astype(np.uint8)


def _fallback_box(h: int, w: int) -> tuple[int, int, int, int]:
    """torchvision's central fallback, written out from its source."""
    in_ratio = w / h
    if in_ratio < min(RATIO):
        cw, ch = w, int(round(w / min(RATIO)))
    elif in_ratio > max(RATIO):
        ch, cw = h, int(round(h * max(RATIO)))
    else:
        cw, ch = w, h
    return (h - ch) // 2, (w - cw) // 2, ch, cw


@pytest.mark.parametrize("shape", [(360, 480), (480, 360), (32, 32), (20, 200), (7, 5)])
def test_random_resized_crop_box_inside_and_in_bounds(shape):
    h, w = shape
    rng = np.random.default_rng(0)
    for _ in range(500):
        top, left, ch, cw = box = random_resized_crop_box(h, w, rng, SCALE, RATIO)
        assert 0 <= top and 0 <= left and 0 < ch and 0 < cw
        assert top + ch <= h and left + cw <= w, box
        if box == _fallback_box(h, w):
            continue
        # A sampled box: area and aspect in range, up to rounding each side by half a pixel.
        area = h * w
        assert (ch - 0.5) * (cw - 0.5) <= SCALE[1] * area + 1e-9
        assert (ch + 0.5) * (cw + 0.5) >= SCALE[0] * area - 1e-9
        assert (cw - 0.5) / (ch + 0.5) <= RATIO[1] and (cw + 0.5) / (ch - 0.5) >= RATIO[0]


def test_random_resized_crop_box_falls_back_to_the_central_crop():
    # 10 x 500: every sampled box is >= 17 px tall, so all ten tries fail.
    rng = np.random.default_rng(0)
    assert random_resized_crop_box(10, 500, rng) == (0, 243, 10, 13)  # round(10 * 4/3) wide
    assert random_resized_crop_box(500, 10, rng) == (243, 0, 13, 10)  # round(10 / (3/4)) tall


def test_random_resized_crop_box_distribution():
    # scale <= 0.5 on a large image: the first try always fits, so area fraction ~ U(scale),
    # log(w / h) ~ U(log ratio) and the position is uniform over the free range.
    h = w = 4000
    scale = (0.1, 0.5)
    rng = np.random.default_rng(1)
    boxes = np.array([random_resized_crop_box(h, w, rng, scale, RATIO) for _ in range(4000)])
    top, left, ch, cw = boxes.T
    frac = ch * cw / (h * w)
    assert frac.min() > 0.099 and frac.max() < 0.501
    np.testing.assert_allclose(np.quantile(frac, [0.25, 0.5, 0.75]), [0.2, 0.3, 0.4], atol=0.015)
    log_ratio = np.log(cw / ch)
    lo, hi = math.log(RATIO[0]), math.log(RATIO[1])
    assert log_ratio.min() > lo - 0.01 and log_ratio.max() < hi + 0.01
    assert abs(log_ratio.mean()) < 0.01
    assert abs(log_ratio.std() - (hi - lo) / math.sqrt(12)) < 0.01
    for pos, size, full in ((top, ch, h), (left, cw, w)):
        u = pos / (full - size)
        assert abs(u.mean() - 0.5) < 0.02 and abs(u.std() - 1 / math.sqrt(12)) < 0.02


def test_random_resized_crop_pixels_shape_and_determinism():
    fn = make_image_fn(_cfg(train_transform="random_resized_crop"), train=True)
    image = _image(60, 90)
    for seed in range(5):
        out = fn(image, np.random.default_rng(seed))
        assert out.shape == (24, 24, 3) and out.dtype == np.uint8
        np.testing.assert_array_equal(out, fn(image, np.random.default_rng(seed)))
        # The pixels are the drawn box, cropped and resized by PIL bicubic (torchvision's way).
        top, left, h, w = random_resized_crop_box(60, 90, np.random.default_rng(seed))
        ref = Image.fromarray(image).crop((left, top, left + w, top + h))
        np.testing.assert_array_equal(out, np.asarray(ref.resize((24, 24), Image.BICUBIC)))
    a, b = fn(image, np.random.default_rng(0)), fn(image, np.random.default_rng(1))
    assert not np.array_equal(a, b)
    # Images smaller than the output are upsampled.
    assert fn(_image(10, 12), np.random.default_rng(0)).shape == (24, 24, 3)


@pytest.mark.parametrize("shape", [(60, 90), (90, 60), (24, 24), (17, 40)])
def test_resize_center_crop_matches_pil_reference(shape):
    h, w = shape
    image = _image(h, w, seed=3)
    size = 24
    # Reference: shorter side -> size (longer side truncated), bicubic, then the central crop.
    if w <= h:
        new = (size, int(size * h / w))
    else:
        new = (int(size * w / h), size)
    ref = np.asarray(Image.fromarray(image).resize(new, Image.BICUBIC))
    top, left = (ref.shape[0] - size) // 2, (ref.shape[1] - size) // 2
    ref = ref[top : top + size, left : left + size]
    np.testing.assert_array_equal(resize_shorter_center_crop(image, size), ref)
    for train, key in ((False, "eval_transform"), (True, "train_transform")):
        fn = make_image_fn(_cfg(**{key: "resize_center_crop"}), train=train)
        np.testing.assert_array_equal(fn(image, np.random.default_rng(0)), ref)


def test_hflip_only_when_enabled():
    image = _image(40, 40)
    cfg = _cfg(train_transform="random_resized_crop", crop_scale=(1.0, 1.0), crop_ratio=(1, 1))
    plain = make_image_fn(cfg, train=True)
    ref = plain(image, np.random.default_rng(0))  # the whole image: no crop randomness left
    assert all(np.array_equal(plain(image, np.random.default_rng(s)), ref) for s in range(50))
    cfg.hflip = True
    flipping = make_image_fn(cfg, train=True)
    outs = [flipping(image, np.random.default_rng(s)) for s in range(200)]
    flipped = [np.array_equal(o, ref[:, ::-1]) for o in outs]
    assert all(f or np.array_equal(o, ref) for f, o in zip(flipped, outs, strict=True))
    assert 70 < sum(flipped) < 130
    # Flip alone ('none') and never at eval.
    only_flip = make_image_fn(_cfg(hflip=True), train=True)
    flips = [
        np.array_equal(only_flip(ref, np.random.default_rng(s)), ref[:, ::-1]) for s in range(40)
    ]
    assert 0 < sum(flips) < 40
    assert make_image_fn(_cfg(hflip=True, eval_transform="resize_center_crop"), False)(
        image, np.random.default_rng(0)
    ).shape == (24, 24, 3)
    assert make_image_fn(_cfg(hflip=True), train=False) is None


def test_blur_probability_radius_and_train_only():
    from PIL import ImageFilter

    image = _image(32, 32)
    always = make_image_fn(_cfg(blur_prob=1.0, blur_sigma=(1.5, 1.5)), train=True)
    want = np.asarray(Image.fromarray(image).filter(ImageFilter.GaussianBlur(1.5)))
    assert np.array_equal(always(image, np.random.default_rng(0)), want)
    # the radius is drawn after the coin from the record's generator: replay the draws
    cfg = _cfg(blur_prob=0.3, blur_sigma=(0.5, 2.0))
    some = make_image_fn(cfg, train=True)
    blurred = 0
    for seed in range(200):
        out, rng = some(image, np.random.default_rng(seed)), np.random.default_rng(seed)
        if rng.random() >= 0.3:
            assert np.array_equal(out, image)
            continue
        radius = rng.uniform(0.5, 2.0)
        blurred += 1
        assert np.array_equal(out, Image.fromarray(image).filter(ImageFilter.GaussianBlur(radius)))
    assert 35 < blurred < 85
    assert make_image_fn(cfg, train=False) is None  # never at eval
    with pytest.raises(ValueError, match=r"config\.data\.blur_prob"):
        make_image_fn(_cfg(blur_prob=1.5), train=True)
    with pytest.raises(ValueError, match=r"config\.data\.blur_sigma"):
        make_image_fn(_cfg(blur_prob=0.5, blur_sigma=(2.0, 1.0)), train=True)


def test_defaults_pass_images_through():
    assert make_image_fn(ml_collections.ConfigDict({"image_size": 64}), train=True) is None
    assert make_image_fn(ml_collections.ConfigDict({"image_size": 64}), train=False) is None


def test_bad_config_errors_name_the_key():
    with pytest.raises(ValueError, match=r"config\.data\.train_transform.*'random_crop'"):
        make_image_fn(_cfg(train_transform="random_crop"), train=True)
    with pytest.raises(ValueError, match=r"config\.data\.eval_transform.*'random_resized_crop'"):
        make_image_fn(_cfg(eval_transform="random_resized_crop"), train=False)
    with pytest.raises(ValueError, match=r"config\.data\.crop_scale"):
        make_image_fn(_cfg(train_transform="random_resized_crop", crop_scale=(0.5, 2)), True)
    with pytest.raises(ValueError, match=r"config\.data\.crop_ratio"):
        make_image_fn(_cfg(train_transform="random_resized_crop", crop_ratio=(2, 1)), True)
    with pytest.raises(ValueError, match=r"config\.data\.image_size"):
        make_image_fn(_cfg(image_size=None, eval_transform="resize_center_crop"), False)


def test_normalize_host_matches_device_normalization():
    images = _image(8, 8)[None]
    for kind in ("clip", "imagenet", "siglip"):
        host = normalize_host(images, kind)
        assert host.dtype == np.float32 and host.shape == images.shape
        np.testing.assert_allclose(host, normalize_images(jnp.asarray(images), kind), atol=1e-5)
    with pytest.raises(ValueError, match="unknown normalization"):
        normalize_host(images, "nope")


def _pipeline(workers: int):
    """Synthetic records -> random-resized crop + flip (position-seeded) -> batches of 4."""
    cfg = synthetic_data_cfg(train_records=40, image_size=32, num_threads=1, prefetch=1)
    example = ImageTextExample(TextTokenizer.synthetic(12), RandomResizedCrop(16, flip=True))
    return with_workers(train_dataset(cfg, None, 4, seed=0, example=example), workers)


def _take(it, n: int) -> list[dict[str, np.ndarray]]:
    return [{k: np.array(v) for k, v in next(it).items()} for _ in range(n)]


def _assert_same(a: list[dict], b: list[dict]) -> None:
    assert len(a) == len(b)
    for x, y in zip(a, b, strict=True):
        assert x.keys() == y.keys()
        for k in x:
            np.testing.assert_array_equal(x[k], y[k], err_msg=k)


def test_with_workers_same_batches_and_state_round_trip():
    ds = _pipeline(0)
    assert with_workers(ds, 0) is ds
    with pytest.raises(ValueError, match="num_workers"):
        with_workers(ds, -1)
    reference = _take(iter(_pipeline(0)), 6)  # 24 records: crosses no epoch boundary
    t0 = time.perf_counter()
    it = iter(_pipeline(2))
    try:
        first = _take(it, 3)
        assert len(multiprocessing.active_children()) == 2  # the workers are processes
        state = it.get_state()
        rest = _take(it, 3)
    finally:
        it.close()
    _assert_same(first + rest, reference)
    resumed = iter(_pipeline(2))
    try:
        resumed.set_state(state)
        _assert_same(_take(resumed, 3), rest)
    finally:
        resumed.close()
    deadline = time.monotonic() + 20
    while multiprocessing.active_children() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not multiprocessing.active_children(), "grain worker processes left running"
    assert time.perf_counter() - t0 < 120
