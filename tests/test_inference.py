"""Using a trained model: ``mmjax.load`` + ``Pipeline``, ``mmjax eval``, ``mmjax predict``,
``mmjax export`` (a Hugging Face directory that transformers' pipelines load; ``jax.export``
files that a process without mmjax runs).

One tiny CLIP run (configs/clip_vit_b32.py:tiny, 4 steps) is trained once for the module;
references are NumPy formulas, ``evaluate.retrieval_metrics`` and transformers.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import PIL.Image
import pytest

from mmjax.cli.app import main
from tests.conftest import REPO

TINY_STEPS = ["train.steps=4", "train.log_every=2", "train.eval_every=0"]


def train_tiny(config: str, workdir, extra: list[str] = ()) -> None:
    """Trains ``configs/<config>`` for a few steps in this process (final eval included)."""
    from mmjax import config as config_lib
    from mmjax.train.loop import train

    cfg = config_lib.apply_overrides(
        config_lib.load_config(f"{REPO}/configs/{config}"), [*TINY_STEPS, *extra]
    )
    train(cfg, workdir)


@pytest.fixture(scope="module")
def clip_run(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("clip_run")
    train_tiny("clip_vit_b32.py:tiny", workdir)
    return workdir


def held_out_images(n: int, seed: int = 123) -> list[np.ndarray]:
    """Synthetic shapes the run never saw (another seed), some resized to other sizes."""
    from mmjax.data.synthetic import SyntheticShapes

    src = SyntheticShapes("eval", num_records=n, image_size=32, seed=seed)
    out = []
    for i in range(n):
        image = np.asarray(src[i]["image"])
        if i % 2:  # not square, not the model's size: resized + centre-cropped like eval
            image = np.asarray(PIL.Image.fromarray(image).resize((50, 40)))
        out.append(image)
    return out


def test_pipeline_inputs_and_zero_shot_formula(clip_run, tmp_path):
    import mmjax

    pipe = mmjax.load(clip_run)
    assert pipe.kind == "clip"
    images = held_out_images(3)
    path = tmp_path / "x.png"
    PIL.Image.fromarray(images[1]).save(path)
    emb = pipe.embed_images(images)
    assert emb.shape == (3, 64)
    np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-5)
    # the same image as a PIL image, a file path and an array
    same = pipe.embed_images([PIL.Image.fromarray(images[1]), path])
    np.testing.assert_allclose(same, emb[[1, 1]], atol=1e-6)

    labels = ["red", "blue", "green", "square"]
    temps = ["a {} shape.", "a photo of a {}.", "{}"]
    probs = pipe.zero_shot(images, labels, templates=temps)
    # CLIP's recipe in NumPy: mean of normalized prompt embeddings, renormalized;
    # softmax of exp(logit_scale) * cosine
    prompts = pipe.embed_texts([t.format(c) for c in labels for t in temps]).reshape(4, 3, -1)
    classes = prompts.mean(1)
    classes /= np.linalg.norm(classes, axis=1, keepdims=True)
    logits = np.exp(float(pipe.params["logit_scale"])) * emb @ classes.T
    ref = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    np.testing.assert_allclose(probs, ref, atol=1e-5)
    idx, scores = pipe.retrieve(["red square", "blue circle"], images, k=2)
    sim = pipe.embed_texts(["red square", "blue circle"]) @ emb.T
    np.testing.assert_array_equal(idx, np.argsort(-sim, axis=1)[:, :2])
    np.testing.assert_allclose(scores, np.sort(sim, axis=1)[:, ::-1][:, :2], atol=1e-5)
    with pytest.raises(NotImplementedError, match="caption: this is a two-tower clip"):
        pipe.caption(images)


def test_shipped_imagenet_prompts():
    from mmjax.inference import prompts

    names = prompts.imagenet_classnames()
    assert len(names) == 1000 and names[0] == "tench" and names[-1] == "toilet paper"
    temps = prompts.templates("imagenet")
    assert len(temps) == 80 and temps[0] == "a bad photo of a {}."
    assert len(prompts.templates("simple_imagenet")) == 7
    with pytest.raises(ValueError, match="unknown set 'imagenet21k'"):
        prompts.templates("imagenet21k")


def test_eval_reproduces_the_runs_last_eval(clip_run, tmp_path):
    out = tmp_path / "results.json"
    assert main(["eval", "--workdir", str(clip_run), "--out", str(out)]) == 0
    result = json.loads(out.read_text())
    logged: dict[str, float] = {}
    for line in (clip_run / "metrics.jsonl").read_text().splitlines():
        logged.update({k: v for k, v in json.loads(line).items() if k.startswith("eval/")})
    assert logged and set(logged) <= set(result)
    for key, value in logged.items():
        assert abs(result[key] - value) <= 1e-6, key
    assert result["step"] == 4
    # the trainer's prediction dump of that eval: each image's top-5 captions
    rows = [json.loads(x) for x in (clip_run / "predictions" / "4" / "eval.jsonl").open()]
    assert len(rows) == 32 and all(len(r["captions"]) == 5 for r in rows)
    top1 = np.mean([r["captions"][0]["right"] for r in rows])
    assert abs(top1 - logged["eval/i2t_r1"]) <= 1e-6
    assert all(isinstance(r["captions"][0]["text"], str) for r in rows)


def test_several_evaluators(clip_run):
    from mmjax.cli.eval import run_eval

    evals = [
        dict(name="shape", metrics=["zeroshot_acc"]),
        dict(
            name="colour",
            data=dict(eval_records=16),
            task=dict(zeroshot=dict(synthetic_attribute="colour")),
        ),
    ]
    result = run_eval(clip_run, [f"evals={evals!r}"])
    assert {k for k in result if k.startswith("eval/shape/")} == {"eval/shape/zeroshot_acc"}
    assert "eval/colour/i2t_r1" in result and "eval/colour/zeroshot_acc" in result
    default = run_eval(clip_run, [])
    assert result["eval/shape/zeroshot_acc"] == default["eval/zeroshot_acc"]
    with pytest.raises(ValueError, match=r"config.evals\[0\].data: unknown key 'eval_recs'"):
        run_eval(clip_run, ["evals=[{'name': 'x', 'data': {'eval_recs': 3}}]"])


def test_chunked_retrieval_equals_host_matrix():
    from mmjax.evaluation.evaluate import retrieval_metrics
    from mmjax.evaluation.retrieval import retrieval_metrics_chunked

    rng = np.random.default_rng(0)
    img = rng.normal(size=(300, 16)).astype(np.float32)
    txt = (img + rng.normal(scale=1.5, size=img.shape)).astype(np.float32)
    img[5] = img[7]  # exact ties count against the query on both paths
    txt[9] = txt[11]
    ids = np.repeat(np.arange(150), 2)  # two captions per image (rows of one image agree)
    img_dup = img[ids * 2]
    for kwargs in ({}, {"image_ids": ids}):
        images = img_dup if kwargs else img
        ref = retrieval_metrics(images, txt, **kwargs)
        for chunk in (64, 1000):
            got = retrieval_metrics_chunked(images, txt, chunk=chunk, **kwargs)
            assert got == ref, (kwargs, chunk)


def test_predict_zero_shot_on_pngs(clip_run, tmp_path, capsys):
    import mmjax

    folder = tmp_path / "images"
    folder.mkdir()
    images = held_out_images(3, seed=7)
    for i, image in enumerate(images):
        PIL.Image.fromarray(image).save(folder / f"{i}.png")
    labels = ["square", "circle", "triangle"]
    argv = ["predict", "zero-shot", "--workdir", str(clip_run), "--images", str(folder)]
    assert main([*argv, "--labels", ",".join(labels)]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [r["image"] for r in rows] == [str(folder / f"{i}.png") for i in range(3)]
    probs = mmjax.load(clip_run).zero_shot(images, labels)
    for row, ref in zip(rows, probs, strict=True):
        np.testing.assert_allclose([row["probs"][lab] for lab in labels], ref, atol=1e-6)
        assert row["label"] == labels[int(np.argmax(ref))]
        assert row["score"] == pytest.approx(float(ref.max()))
    # a missing input is a file-system error (mmjax.errors: exit 10)
    assert main([*argv[:-1], str(tmp_path / "none"), "--labels", "a"]) == 10
    assert "no image files" in capsys.readouterr().err


LABELS = ["a red square", "a blue circle", "a green triangle", "a big shape"]


def hf_pipeline_probs(directory, images: list[np.ndarray]) -> np.ndarray:
    """transformers' zero-shot-image-classification pipeline: ``[n, labels]`` in LABELS order."""
    from transformers import pipeline

    clf = pipeline("zero-shot-image-classification", model=str(directory))
    out = []
    for image in images:
        scores = clf(PIL.Image.fromarray(image), candidate_labels=LABELS, hypothesis_template="{}")
        by_label = {r["label"]: r["score"] for r in scores}
        out.append([by_label[label] for label in LABELS])
    return np.asarray(out)


def test_clip_run_exports_to_transformers_pipeline(clip_run, tmp_path):
    from transformers import AutoModel, AutoProcessor

    import mmjax

    out = tmp_path / "hf"
    assert main(["export", "--workdir", str(clip_run), "--to-hf", str(out)]) == 0
    assert type(AutoModel.from_pretrained(out)).__name__ == "CLIPModel"
    assert type(AutoProcessor.from_pretrained(out)).__name__ == "CLIPProcessor"
    images = held_out_images(4)  # two of them 50x40: resized + cropped on both sides
    ours = mmjax.load(clip_run).zero_shot(images, LABELS)
    np.testing.assert_allclose(hf_pipeline_probs(out, images), ours, atol=1e-4)
    # the exported directory loads back as a Pipeline with the same probabilities
    np.testing.assert_allclose(mmjax.load(out).zero_shot(images, LABELS), ours, atol=1e-5)


@pytest.fixture(scope="module")
def siglip_export(tmp_path_factory):
    """A 4-step configs/siglip_b16.py:tiny run and its ``--to-hf`` export."""
    run = tmp_path_factory.mktemp("siglip_run")
    train_tiny("siglip_b16.py:tiny", run)
    out = run / "hf"
    assert main(["export", "--workdir", str(run), "--to-hf", str(out)]) == 0
    return run, out


def test_siglip_export_is_transformers_siglip_without_text_mask(siglip_export):
    """The export is exactly the trained model as transformers runs it: SigLIP's processor
    pads to max_length and passes no mask, so the reference is mmjax's towers with every
    position attended."""
    import jax.numpy as jnp
    from transformers import AutoModel

    import mmjax
    from mmjax.models.towers import TwoTower

    run, out = siglip_export
    assert type(AutoModel.from_pretrained(out)).__name__ == "SiglipModel"
    pipe = mmjax.load(run)
    images = held_out_images(2)
    ids, mask = pipe.tokenize(LABELS)
    assert ids.shape == (len(LABELS), 64)  # padded to max_length with the pad token
    text = pipe.model.apply(
        {"params": pipe.params}, jnp.asarray(ids), jnp.ones_like(mask), method=TwoTower.encode_text
    )
    text = np.asarray(text) / np.linalg.norm(np.asarray(text), axis=1, keepdims=True)
    ref = 1 / (1 + np.exp(-pipe.logits(pipe.embed_images(images), text)))
    # sigmoid probabilities with a -10 bias are ~1e-5: compare them relatively
    np.testing.assert_allclose(hf_pipeline_probs(out, images), ref, rtol=1e-4)


def test_siglip_export_pipeline_equals_mmjax_zero_shot(siglip_export):
    import mmjax

    run, out = siglip_export
    images = held_out_images(2)
    ours = mmjax.load(run).zero_shot(images, LABELS)
    np.testing.assert_allclose(hf_pipeline_probs(out, images), ours, rtol=1e-4)


def test_export_names_what_transformers_cannot_pool_like(tmp_path):
    from mmjax.config import load_config
    from mmjax.data.tokenizer import load_tokenizer
    from mmjax.hf.config_map import ConfigMapError
    from mmjax.hf.run_export import _text_eos
    from mmjax.models.towers import build_two_tower
    from tests.conftest import REPO

    cfg = load_config(f"{REPO}/configs/clip_vit_b32.py:tiny")
    tok = load_tokenizer("synthetic", 16)
    cfg.model.text.eos_id = 63  # never produced by the tokenizer: pooled at its end token
    assert _text_eos(build_two_tower(cfg.model), tok) == tok.eos_id
    cfg.model.text.eos_id = 5  # a word id: mmjax and transformers would pool differently
    with pytest.raises(ConfigMapError, match="pools at token id 5"):
        _text_eos(build_two_tower(cfg.model), tok)


SERVE = """
import json, sys
import jax, numpy as np
d = np.load(sys.argv[1] + "/inputs.npz")
manifest = json.load(open(sys.argv[1] + "/hlo/manifest.json"))
fns = {k: jax.export.deserialize(open(sys.argv[1] + "/hlo/" + v["file"], "rb").read())
       for k, v in manifest["functions"].items()}
out = {}
for n in (2, 5):
    out[f"img{n}"] = np.asarray(fns["encode_image"].call(d["pixels"][:n]))
    out[f"txt{n}"] = np.asarray(fns["encode_text"].call(d["ids"][:n], d["mask"][:n]))
np.savez(sys.argv[1] + "/outputs.npz", **out)
assert "mmjax" not in sys.modules
"""


def test_stablehlo_export_runs_without_mmjax(clip_run, tmp_path):
    import mmjax

    assert main(["export", "--workdir", str(clip_run), "--stablehlo", str(tmp_path / "hlo")]) == 0
    manifest = json.loads((tmp_path / "hlo" / "manifest.json").read_text())
    assert manifest["functions"]["encode_image"]["inputs"][0]["shape"] == ["batch", 32, 32, 3]
    assert manifest["preprocessing"]["context_length"] == 16
    pipe = mmjax.load(clip_run)
    images = held_out_images(5)
    texts = ["a red square", "a small blue circle on the left", "x", "a big shape", "green"]
    ids, mask = pipe.tokenize(texts)
    np.savez(tmp_path / "inputs.npz", pixels=pipe.pixel_values(images), ids=ids, mask=mask)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    subprocess.run(
        [sys.executable, "-c", SERVE, str(tmp_path)],
        check=True,
        env=dict(env, JAX_PLATFORMS="cpu"),
        cwd=tmp_path,  # not the repository: mmjax is not importable from here by accident
        timeout=300,
    )
    got = np.load(tmp_path / "outputs.npz")
    img, txt = pipe.embed_images(images), pipe.embed_texts(texts)
    for n in (2, 5):
        np.testing.assert_allclose(got[f"img{n}"], img[:n], atol=1e-5)
        np.testing.assert_allclose(got[f"txt{n}"], txt[:n], atol=1e-5)
