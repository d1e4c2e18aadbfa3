"""Text-to-image over trained tiny runs (a VQ-VAE, a CLIP, a generator, a colour judge,
each trained once for the module): the frozen tokenizer loaded from the VQ-VAE run, the
eval's sample grids, CLIP score and judges, ``mmjax predict generate`` and ``mmjax.load``'s
``ImageGenerator``."""

from __future__ import annotations

import json

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mmjax.config import apply_overrides, load_config
from mmjax.models.text_to_image import TextToImage
from mmjax.tasks import build_task
from mmjax.tasks.vqvae import unit_images

TINY = "configs/text_to_image_synthetic.py:tiny"
CAPTIONS = ["a small red circle at the top left", "a large blue cross on the right"]


SHORT = ["train.steps=4", "train.eval_every=0", "train.log_every=2", "train.checkpoint_every=4"]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Tiny runs, trained once: a VQ-VAE, a CLIP at its image size, a text-to-image model
    from the VQ-VAE whose eval CLIP-scores with that CLIP, a colour judge."""
    from mmjax.train.loop import train

    root = tmp_path_factory.mktemp("t2i_runs")
    vq_cfg = apply_overrides(load_config("configs/vqvae_synthetic.py:tiny"), SHORT)
    train(vq_cfg, root / "vq")
    clip = ["model.image.image_size=16", "data.image_size=16"]
    train(
        apply_overrides(load_config("configs/clip_synthetic.py:tiny"), SHORT + clip), root / "clip"
    )
    overrides = [*SHORT, f"init_from={root / 'vq'}", f"task.clip={root / 'clip'}"]
    config = apply_overrides(load_config(TINY), overrides)
    train(config, root / "t2i")
    judge = ["task.label_field=colour", "task.num_classes=0", "data.image_size=16"]
    judge += ["model.image.image_size=16"]
    train(apply_overrides(load_config("configs/classify_image.py:tiny"), SHORT + judge), root / "j")
    return root, vq_cfg, config


def test_training_from_a_vqvae_run_keeps_the_tokenizer_frozen(runs):
    """``init_from`` a tiny VQ-VAE run loads its ``vqvae/`` params; after training they are
    unchanged, the generator's are not, and the targets are the tokenizer's codes."""
    from mmjax.train.checkpoint import latest_step_dir, read_state

    root, vq_cfg, config = runs

    def state(run):
        return read_state(latest_step_dir(root / run / "checkpoints"))

    vq, t2i = state("vq"), state("t2i")
    vq_params = {**vq["params"]["vqvae"], **vq["frozen"]["vqvae"]}
    for part in ("encoder", "decoder", "quantizer"):
        jax.tree.map(np.testing.assert_array_equal, t2i["frozen"]["vqvae"][part], vq_params[part])
    assert "vqvae" not in t2i["params"]
    task = build_task(config)
    fresh = nn.unbox(jax.jit(task.init)(jax.random.PRNGKey(config.train.seed)))["params"]
    assert not np.allclose(
        fresh["decoder"]["ln_final"]["scale"], t2i["params"]["decoder"]["ln_final"]["scale"]
    )
    images = np.random.default_rng(0).integers(0, 256, (2, 16, 16, 3), np.uint8)
    full = {**t2i["params"], "vqvae": t2i["frozen"]["vqvae"]}
    codes = task.model.apply({"params": full}, unit_images(images), method=TextToImage.tokenize)
    vq_task = build_task(vq_cfg)
    want = vq_task.apply(
        {"vqvae": vq_params}, unit_images(images), method=lambda m, x: m.tokenize(x)
    )
    np.testing.assert_array_equal(codes, want)
    rows = [json.loads(x) for x in (root / "t2i/metrics.jsonl").read_text().splitlines()]
    assert rows[-1]["eval/token_ce"] > 0 and 0 <= rows[-1]["eval/sample_codebook_usage"] <= 1
    for suffix in ("", "_guided", "_real"):  # task.clip: the CLIP score of each image set
        assert 0 <= rows[-1][f"eval/clip_score{suffix}"] <= 100
    for suffix in ("", "_guided"):  # the eval's sample grids (Task.dump_predictions)
        assert (root / f"t2i/predictions/4/eval_samples{suffix}.png").is_file()


def _tensorboard_images(directory) -> dict[str, np.ndarray]:
    """``{tag: uint8 [H, W, 3]}`` of the image summaries in ``directory``'s event files
    (TFRecord frames: u64 length, u32 crc, the ``Event`` proto, u32 crc)."""
    import io
    import struct

    from PIL import Image
    from tensorboardX.proto import event_pb2

    images = {}
    for path in sorted(directory.glob("events.out.tfevents.*")):
        data, pos = path.read_bytes(), 0
        while pos < len(data):
            (length,) = struct.unpack("<Q", data[pos : pos + 8])
            event = event_pb2.Event.FromString(data[pos + 12 : pos + 12 + length])
            pos += 12 + length + 4
            for value in event.summary.value:
                if value.HasField("image"):
                    png = value.image.encoded_image_string
                    images[value.tag] = np.asarray(Image.open(io.BytesIO(png)).convert("RGB"))
    return images


def test_eval_sample_grids_go_to_tensorboard_as_written_to_predictions(runs):
    """The trainer's TensorBoard writer gets the task's ``eval_images``: the same grids as
    the PNGs under ``predictions/<step>/``."""
    from PIL import Image

    root, _, _ = runs
    logged = _tensorboard_images(root / "t2i" / "tensorboard")
    assert set(logged) == {"eval/samples", "eval/samples_guided"}
    for suffix in ("", "_guided"):
        png = np.asarray(Image.open(root / f"t2i/predictions/4/eval_samples{suffix}.png"))
        np.testing.assert_array_equal(logged[f"eval/samples{suffix}"], png)
    assert logged["eval/samples"].shape == (2 + 2 * 18, 2 + 8 * 18, 3)  # 16 samples of 16 px
    vq_logged = _tensorboard_images(root / "vq" / "tensorboard")
    assert vq_logged["eval/reconstructions"].shape == (2 + 8 * 18, 2 + 8 * 18, 3)


def test_clip_score_is_100_times_the_mean_clipped_cosine_of_each_image_with_its_caption(runs):
    from mmjax.data.synthetic import SyntheticShapes
    from mmjax.evaluation.judge import ClipScorer

    root, _, _ = runs
    scorer = ClipScorer(str(root / "clip"))
    records = [SyntheticShapes("eval", 8, image_size=16)[i] for i in range(8)]
    images = np.stack([r["image"] for r in records])
    captions = [r["caption"] for r in records]
    image_emb = scorer.pipeline.embed_images(list(images))

    def want(texts: list[str]) -> float:
        cosine = np.sum(image_emb * scorer.pipeline.embed_texts(texts), axis=-1)
        return 100 * float(np.maximum(cosine, 0).mean())

    assert scorer.score(images, captions) == pytest.approx(want(captions), rel=1e-5)
    shifted = captions[1:] + captions[:1]  # each image against another image's caption
    assert scorer.score(images, shifted) == pytest.approx(want(shifted), rel=1e-5)
    with pytest.raises(ValueError, match="8 images but 7 captions"):
        scorer.score(images, captions[:7])


def test_judge_accuracy_is_the_classifier_agreement_with_the_caption_attributes(runs):
    from mmjax.data.synthetic import COLOURS, COMBINATIONS
    from mmjax.evaluation.judge import AttributeJudge

    root, _, _ = runs
    judge = AttributeJudge({"colour": str(root / "j"), "shape": ""})
    images = np.random.default_rng(5).integers(0, 256, (70, 16, 16, 3), np.uint8)
    labels = np.arange(70) * 7 % len(COMBINATIONS)
    predicted = judge.predict(images)["colour"]
    want = [list(COLOURS).index(COMBINATIONS[y][1]) for y in labels]
    assert judge.accuracy(images, labels) == {"colour": pytest.approx(np.mean(predicted == want))}
    with pytest.raises(Exception, match="not an image classifier of 'shape'"):
        AttributeJudge({"shape": str(root / "j")})


def test_predict_generate_writes_a_png_per_prompt(runs, tmp_path):
    from PIL import Image

    from mmjax.cli.app import main

    root, _, _ = runs
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("\n".join(CAPTIONS + ["a small green square in the center"]) + "\n")
    out = tmp_path / "rows.jsonl"
    argv = ["predict", "generate", "--workdir", str(root / "t2i"), "--prompts", str(prompts)]
    assert main([*argv, "--out", str(out), "--batch-size", "2"]) == 0
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["prompt"] for r in rows] == [*CAPTIONS, "a small green square in the center"]
    for r in rows:
        assert Image.open(r["image"]).size == (16, 16) and r["logp"] <= 0
    assert (root / "t2i" / "samples" / "grid.png").is_file()


PROMPTS = [*CAPTIONS, "a small green square in the center"]


@pytest.fixture(scope="module")
def generator(runs):
    """``mmjax.load`` of the tiny text-to-image run, two rows per sampler call (so the three
    prompts are a full chunk and a padded one)."""
    import mmjax

    root, _, _ = runs
    return mmjax.load(root / "t2i", batch_size=2)


@pytest.fixture(scope="module")
def reference(runs):
    """The task's sampler on one chunk, from the run's params loaded apart from the
    generator: ``(texts, scale, key) -> (uint8 images, mean logp, codes)``."""
    from mmjax.inference.run_loading import load_run

    root, _, config = runs
    task, params = build_task(config), load_run(root / "t2i").params
    sampler = jax.jit(task.generate, static_argnums=4)

    def draw(texts, scale, key):
        tokens, mask = (jnp.asarray(a) for a in task.tokenizer(texts))
        out = sampler(params, tokens, mask, key, scale)
        pixels = np.clip(np.round(np.asarray(out["images"]) * 255), 0, 255).astype(np.uint8)
        return pixels, np.asarray(out["logp"]).mean(1), np.asarray(out["codes"])

    return draw


def _chunks(reference, scale, seed):
    """``PROMPTS`` as two chunks of two rows, the second padded with its last prompt; each
    chunk's key folds its first row into ``PRNGKey(seed)``."""
    key = jax.random.PRNGKey(seed)
    first = reference(PROMPTS[:2], scale, jax.random.fold_in(key, 0))
    second = reference([PROMPTS[2]] * 2, scale, jax.random.fold_in(key, 2))
    return [np.concatenate([a, b[:1]]) for a, b in zip(first, second, strict=True)]


def test_load_gives_an_image_generator_whose_samples_are_the_tasks(generator, reference, runs):
    """``mmjax.load`` of a text_to_image run: uint8 ``[n, H, W, 3]`` images, ``[n]`` mean
    log-probs and ``[n, codes]``, equal to the task's sampler on the padded chunks with the
    run's guidance; the sampler compiles once for a full and a padded chunk."""
    from mmjax.inference import ImageGenerator

    _, _, config = runs
    assert isinstance(generator, ImageGenerator) and "16px" in repr(generator)
    out = generator.generate(PROMPTS, seed=3)
    task = generator.task
    assert len(out) == 3 and out.images.shape == (3, 16, 16, 3) and out.images.dtype == np.uint8
    assert out.logp.shape == (3,) and out.logp.dtype == np.float32 and (out.logp <= 0).all()
    assert out.codes.shape == (3, task.num_codes) and out.codes.max() < task.codebook_size
    images, logp, codes = _chunks(reference, config.task.guidance_scale, 3)
    np.testing.assert_array_equal(out.images, images)
    np.testing.assert_array_equal(out.codes, codes)
    np.testing.assert_allclose(out.logp, logp, rtol=1e-6)
    pil = out.to_pil()
    assert [p.size for p in pil] == [(16, 16)] * 3
    np.testing.assert_array_equal(np.asarray(pil[2]), out.images[2])
    compiled = generator._sample._cache_size()
    generator.generate(PROMPTS[:1], seed=3)  # one row: padded to the same shape
    assert generator._sample._cache_size() == compiled


def test_generate_gives_the_pixels_generate_images_writes(generator, runs, tmp_path):
    from PIL import Image

    from mmjax.evaluation.judge import image_grid
    from mmjax.inference.generate_images import generate_images

    root, _, _ = runs
    rows = generate_images(
        root / "t2i", PROMPTS, tmp_path, guidance_scale=1.5, seed=7, batch_size=2
    )
    out = generator.generate(PROMPTS, guidance_scale=1.5, seed=7)
    assert [r["prompt"] for r in rows] == PROMPTS
    for i, row in enumerate(rows):
        assert row["image"] == str(tmp_path / f"{i:04d}.png")
        np.testing.assert_array_equal(np.asarray(Image.open(row["image"])), out.images[i])
        assert row["logp"] == float(out.logp[i])
    grid = np.asarray(Image.open(tmp_path / "grid.png"))
    np.testing.assert_array_equal(grid, image_grid(out.images))


def test_the_seed_alone_decides_the_samples(generator):
    first = generator.generate(PROMPTS, seed=11)
    again = generator.generate(PROMPTS, seed=11)
    other = generator.generate(PROMPTS, seed=12)
    np.testing.assert_array_equal(first.images, again.images)
    np.testing.assert_array_equal(first.logp, again.logp)
    assert (first.codes != other.codes).any(axis=1).all()  # every row drew other codes


def test_guidance_none_is_the_runs_scale_and_zero_or_below_is_none(generator, reference, runs):
    _, _, config = runs
    run_scale = config.task.guidance_scale
    assert generator.guidance(None) == run_scale > 0
    assert generator.guidance(0) is None and generator.guidance(-1.0) is None
    assert generator.guidance(2) == 2.0
    default = generator.generate(PROMPTS, seed=5)
    explicit = generator.generate(PROMPTS, guidance_scale=run_scale, seed=5)
    np.testing.assert_array_equal(default.codes, explicit.codes)
    off = generator.generate(PROMPTS, guidance_scale=0.0, seed=5)
    negative = generator.generate(PROMPTS, guidance_scale=-2.0, seed=5)
    np.testing.assert_array_equal(off.codes, negative.codes)
    np.testing.assert_array_equal(off.logp, negative.logp)
    images, logp, codes = _chunks(reference, None, 5)  # the conditional model alone
    np.testing.assert_array_equal(off.codes, codes)
    np.testing.assert_allclose(off.logp, logp, rtol=1e-6)
    assert not np.allclose(default.logp, off.logp)  # guidance changes the distribution


def test_no_texts_give_empty_rows_and_one_string_is_refused(generator, runs, tmp_path):
    from mmjax.inference.generate_images import generate_images

    root, _, _ = runs
    out = generator.generate([])
    assert out.images.shape == (0, 16, 16, 3) and out.images.dtype == np.uint8
    assert out.logp.shape == (0,) and out.codes.shape == (0, generator.task.num_codes)
    with pytest.raises(TypeError, match="not one string"):
        generator.generate("a small red circle")
    with pytest.raises(ValueError, match="no prompts"):
        generate_images(root / "t2i", [], tmp_path)


def test_load_names_what_it_serves_for_other_tasks(runs, tmp_path):
    """A contrastive run is still a ``Pipeline``; a VQ-VAE or classifier run is refused,
    naming both kinds ``mmjax.load`` serves; ``generate_images`` refuses them too."""
    import mmjax
    from mmjax.config import ConfigError
    from mmjax.inference.generate_images import generate_images

    root, _, _ = runs
    assert isinstance(mmjax.load(root / "clip"), mmjax.Pipeline)
    with pytest.raises(ValueError, match=r"'vqvae' run; .*Pipeline.*'text_to_image'.*Generator"):
        mmjax.load(root / "vq")
    with pytest.raises(ConfigError, match=r"a '\w+' run, not text_to_image"):
        generate_images(root / "j", CAPTIONS, tmp_path)
    assert not (tmp_path / "grid.png").exists()
