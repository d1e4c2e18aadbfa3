"""mmjax's image preprocessing equals the HF image processors' ``pixel_values``."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import pytest

from mmjax.data.image_processing import HFImageProcessor
from mmjax.data.tokenizer import TextTokenizer
from mmjax.data.transforms import ImageTextExample, normalize_images
from tests.hf_reference import max_diff, require_transformers

PROCESSORS = [
    ("CLIPImageProcessor", dict(size={"shortest_edge": 20}, crop_size=16)),
    ("SiglipImageProcessor", dict(size={"height": 16, "width": 16})),
    ("ViTImageProcessor", dict(size={"height": 16, "width": 12})),
    ("ConvNextImageProcessor", dict(size={"shortest_edge": 32}, crop_pct=0.875)),
    ("ConvNextImageProcessor", dict(size={"shortest_edge": 384})),
]


@pytest.mark.parametrize("cls,kwargs", PROCESSORS)
def test_matches_transformers_image_processor(tmp_path, cls, kwargs):
    transformers = require_transformers()
    ref = getattr(transformers, cls)(**kwargs)
    ref.save_pretrained(tmp_path)
    ours = HFImageProcessor.from_pretrained(tmp_path)
    rng = np.random.default_rng(0)
    for shape in [(37, 50, 3), (50, 37, 3), (24, 24, 3)]:
        image = rng.integers(0, 256, size=shape, dtype=np.uint8)
        expected = ref(images=image, return_tensors="np")["pixel_values"][0].transpose(1, 2, 0)
        got = ours(image)
        assert got.shape == expected.shape
        assert max_diff(expected, got) <= 1e-5
        # The split used by training: uint8 resize/crop on the host, normalize on device.
        on_device = normalize_images(jnp.asarray(ours.resize_crop(image))[None], str(tmp_path))
        assert max_diff(expected, on_device[0]) <= 1e-5


def test_data_transform_applies_the_processor(tmp_path):
    proc = HFImageProcessor(shortest_edge=8, crop=(8, 8))
    example = ImageTextExample(
        TextTokenizer.synthetic(12), lambda image, rng: proc.resize_crop(image)
    )
    out = example({"image": np.zeros((32, 40, 3), np.uint8), "caption": "a red circle"})
    assert out["image"].shape == (8, 8, 3) and out["image"].dtype == np.uint8
