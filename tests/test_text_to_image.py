"""Text-to-image: cached sampling against the teacher-forced model, guidance mixing, top-k,
the null condition, and the frozen tokenizer loaded from a VQ-VAE run."""

from __future__ import annotations

import functools
import json

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mmjax.config import apply_overrides, load_config
from mmjax.models.generate import guided_logits, sample, top_k_filter
from mmjax.models.text_to_image import TextToImage
from mmjax.tasks import build_task
from mmjax.tasks.vqvae import unit_images

TINY = "configs/text_to_image_synthetic.py:tiny"
CAPTIONS = ["a small red circle at the top left", "a large blue cross on the right"]


@functools.cache
def _task_and_params():
    task = build_task(load_config(TINY))
    params = nn.unbox(jax.jit(task.init)(jax.random.PRNGKey(0)))["params"]
    return task, params


def _np_log_softmax(x: np.ndarray) -> np.ndarray:
    x = x.astype(np.float64)
    x = x - x.max(-1, keepdims=True)
    return x - np.log(np.exp(x).sum(-1, keepdims=True))


def _teacher_forced(task, params, codes, tokens, mask):
    """Full (uncached) forward: code logits ``[batch, n, K]`` (BOS column dropped)."""
    logits = task.model.apply({"params": params}, codes, tokens, mask, method=TextToImage.logits)
    return np.asarray(logits[..., : task.codebook_size])


@pytest.mark.parametrize("scale", [None, 2.5])
def test_sampled_log_probs_match_the_uncached_model(scale):
    """``generate`` steps the KV-cached decoder; the log-prob it reports for each drawn code
    equals the full teacher-forced forward's on the drawn sequence (guided: the NumPy
    mix of the caption's and the null caption's log-softmax inputs)."""
    task, params = _task_and_params()
    tokens, mask = (jnp.asarray(a) for a in task.tokenizer(CAPTIONS))
    gen = jax.jit(lambda p, t, m, r: task.generate(p, t, m, r, scale))
    out = gen(params, tokens, mask, jax.random.PRNGKey(3))
    codes = np.asarray(out["codes"])
    assert codes.shape == (2, task.num_codes) and codes.max() < task.codebook_size
    cond = _teacher_forced(task, params, codes, tokens, mask)
    if scale is None:
        logits = cond
    else:
        uncond = _teacher_forced(task, params, codes, *task.null_condition(2))
        logits = uncond + scale * (cond - uncond)
    want = np.take_along_axis(_np_log_softmax(logits), codes[..., None], -1)[..., 0]
    np.testing.assert_allclose(np.asarray(out["logp"]), want, atol=1e-5)
    assert out["images"].shape == (2, task.image_size, task.image_size, 3)


def test_cached_decode_steps_match_the_full_forward():
    """Position by position with the KV cache: the logits of every step equal the
    teacher-forced forward's (<= 1e-5)."""
    task, params = _task_and_params()
    tokens, mask = (jnp.asarray(a) for a in task.tokenizer(CAPTIONS))
    rng = np.random.default_rng(0)
    codes = rng.integers(0, task.codebook_size, size=(2, task.num_codes)).astype(np.int32)
    full = _teacher_forced(task, params, codes, tokens, mask)
    context = task.model.apply({"params": params}, tokens, mask, method=TextToImage.encode_text)
    step, cache = task._decoder_fns(params, context, mask)
    seq = np.concatenate([np.full((2, 1), task.codebook_size), codes[:, :-1]], axis=1)
    step = jax.jit(step)
    for i in range(task.num_codes):
        logits, cache = step(cache, jnp.asarray(seq[:, i], jnp.int32))
        np.testing.assert_allclose(np.asarray(logits), full[:, i], atol=1e-5, err_msg=str(i))


def test_guided_logits_match_numpy():
    rng = np.random.default_rng(1)
    cond, uncond = rng.normal(size=(2, 3, 7)).astype(np.float32)
    for s in (0.0, 1.0, 3.0, -0.5):
        got = np.asarray(guided_logits(jnp.asarray(cond), jnp.asarray(uncond), s))
        np.testing.assert_allclose(got, uncond + s * (cond - uncond), rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(guided_logits(cond, uncond, 1.0), cond, atol=1e-6)


def _table_step(table):
    """A stateless model: row ``r``'s logits at position ``i`` are ``table[r, i]``."""

    def step(cache, tokens):
        return table[jnp.arange(table.shape[0]), cache["i"]], {"i": cache["i"] + 1}

    return step, {"i": jnp.zeros((table.shape[0],), jnp.int32)}


def test_top_k_sampling_only_emits_the_k_most_likely_tokens():
    rows, length, vocab, k = 3, 6, 11, 3
    table = np.random.default_rng(2).normal(size=(rows, length, vocab)).astype(np.float32)
    allowed = np.argsort(-table, axis=-1)[..., :k]  # [rows, length, k]

    @jax.jit
    def draw(key):
        ids, _ = sample(
            *_table_step(jnp.asarray(table)), key,
            batch_size=rows, max_len=length + 1, bos_id=0, temperature=2.0, top_k=k,
        )  # fmt: skip
        return ids[:, 1:]

    seen = np.stack([np.asarray(draw(jax.random.PRNGKey(s))) for s in range(60)])
    for r in range(rows):
        for i in range(length):
            emitted = set(seen[:, r, i].tolist())
            assert emitted <= set(allowed[r, i].tolist()), (r, i, emitted)
            assert len(emitted) == k, (r, i, emitted)  # every one of the k is reachable
    filtered = np.asarray(top_k_filter(jnp.asarray(table), k))
    assert ((filtered > -1e8).sum(-1) == k).all()


def test_caption_dropout_uses_the_null_caption_at_the_configured_rate():
    task, _ = _task_and_params()
    n = 2000
    ids, mask = task.tokenizer(CAPTIONS[:1] * n)
    tokens, masks = task.drop_captions(
        {"tokens": jnp.asarray(ids), "padding_mask": jnp.asarray(mask)}, jax.random.PRNGKey(0)
    )
    tokens, masks = np.asarray(tokens), np.asarray(masks)
    null_ids, null_mask = task.tokenizer([""])
    dropped = (tokens == null_ids).all(1)
    kept = (tokens == ids[0]).all(1)
    assert (dropped | kept).all() and (masks[dropped] == null_mask).all()
    assert dropped.mean() == pytest.approx(task.cond_drop, abs=0.03)
    assert null_ids[0, :2].tolist() == [ids[0, 0], task.tokenizer.eos_id]  # [BOS, EOS]


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


def test_48px_variants_share_the_tokenizer_the_generator_loads():
    """``init_from`` loads the tokenizer by path, so the generator's ``model.vqvae`` must be
    the tokenizer run's: the ``48px`` variants agree, and give a 12x12 code grid."""
    from mmjax.models.vqvae import VQVAESpec

    vq = load_config("configs/vqvae_synthetic.py:48px")
    t2i = load_config("configs/text_to_image_synthetic.py:48px")
    assert t2i.model.vqvae.to_dict() == vq.model.vqvae.to_dict()
    assert vq.data.image_size == t2i.data.image_size == 48
    assert VQVAESpec(**vq.model.vqvae.to_dict()).grid == 12
    assert build_task(t2i).num_codes == 144
