"""Using a trained model: ``mmjax.load`` + ``Pipeline``, ``mmjax eval``, ``mmjax predict``.

One tiny CLIP run (configs/clip_vit_b32.py:tiny, 4 steps) is trained once for the module;
references are NumPy formulas, ``evaluate.retrieval_metrics`` and transformers (in
test_inference_export.py).
"""

from __future__ import annotations

import json

import numpy as np
import PIL.Image
import pytest

from mmjax.cli import main
from tests.conftest import REPO

TINY_STEPS = ["train.steps=4", "train.log_every=2", "train.eval_every=0"]


def train_tiny(config: str, workdir, extra: list[str] = ()) -> None:
    """Trains ``configs/<config>`` for a few steps in this process (final eval included)."""
    from mmjax import config as config_lib
    from mmjax.train import train

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


def test_several_evaluators(clip_run):
    from mmjax.cli_eval import run_eval

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
    from mmjax.evaluate import retrieval_metrics
    from mmjax.retrieval import retrieval_metrics_chunked

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
    assert main([*argv[:-1], str(tmp_path / "none"), "--labels", "a"]) == 2
    assert "no image files" in capsys.readouterr().err
