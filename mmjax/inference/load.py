"""``mmjax.load(path)``: a ``Pipeline`` from a run, a step directory, an HF directory, ``hf:ID``;
an ``ImageGenerator`` from a ``text_to_image`` run.

    pipe = mmjax.load("runs/clip")                      # contrastive run / HF dir: Pipeline
    txt = pipe.embed_texts(["a photo of a cat"])        # [1, dim]
    gen = mmjax.load("runs/t2i")                        # text_to_image run: ImageGenerator
    images = gen.generate(["a red circle"]).images      # uint8 [1, H, W, 3]
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from mmjax.data.augment import make_image_fn
from mmjax.data.media import MediaInputs, media_kind
from mmjax.data.tokenizer import TextTokenizer
from mmjax.data.transforms import NORMALIZATIONS, image_processor, normalize_images
from mmjax.inference.generation import GENERATION_TASKS, ImageGenerator
from mmjax.inference.media import MediaTower
from mmjax.inference.pipeline import Pipeline
from mmjax.inference.run_loading import LoadedRun, is_run, load_run

TWO_TOWER_TASKS = ("contrastive",)


def load(
    path: str | Path, *, allow_network: bool = False, batch_size: int = 32
) -> Pipeline | ImageGenerator:
    """The model at ``path`` with its tokenizer and image preprocessing (a run whose image
    tower is a video / audio tower: its video / audio preprocessing, ``embed_videos`` /
    ``embed_audio``): a ``Pipeline`` for a two-tower (``contrastive``) run or HF
    directory, an ``ImageGenerator`` (``generate(texts)``) for a ``text_to_image`` run;
    ``batch_size``: the rows per jitted call.

    ``path``: a run workdir or its ``checkpoints/`` directory (latest step; the EMA params
    if the run kept an EMA), one checkpoint step directory, a Hugging Face model directory
    (``config.json`` + weights + ``tokenizer.json`` + ``preprocessor_config.json``), or
    ``hf:ID`` (the local HF cache; downloaded only with ``allow_network=True``).
    """
    text = str(path)
    if text.startswith("hf:"):
        from mmjax.hf.hub import resolve

        return load_hf(resolve(text[3:], allow_network=allow_network), batch_size)
    if is_run(path):
        return load_run_model(path, batch_size)
    if (Path(path) / "config.json").is_file() and (Path(path) / "checkpoints").exists():
        raise FileNotFoundError(f"{path}: the run has no checkpoint yet")
    if (Path(path) / "config.json").is_file():
        return load_hf(Path(path), batch_size)
    raise FileNotFoundError(
        f"mmjax.load: {path} is neither an mmjax run (workdir, checkpoints/ or step "
        "directory) nor a Hugging Face model directory (config.json)"
    )


def eval_preprocessing(config: Any) -> dict[str, Any]:
    """What the exporters write about a run's image preprocessing: size, rescale, mean, std."""
    data = config.data
    size = int(config.model.image.image_size)
    proc = image_processor(data.get("image_processor") or None)
    if data.normalization in NORMALIZATIONS:
        mean, std = NORMALIZATIONS[data.normalization]
        rescale = 1 / 255
    else:  # an HF directory's processor normalizes
        p = proc or image_processor(data.normalization)
        mean, std, rescale = p.mean, p.std, p.rescale_factor
    return dict(image_size=size, rescale_factor=rescale, image_mean=list(mean), image_std=list(std))


def media_preprocessing(config: Any, kind: str) -> dict[str, Any]:
    """What a video / audio tower's run preprocesses with (``Pipeline.preprocessing``):
    video: the image keys + ``num_frames``; audio: ``config.data.audio`` (the log-mel
    front end and ``max_frames``)."""
    if kind == "video":
        return dict(eval_preprocessing(config), num_frames=int(config.data.num_frames))
    # SpecAugment is a training augmentation: eval (and inference) never applies it
    audio = {k: v for k, v in dict(config.data.audio).items() if k != "spec_augment"}
    return dict(audio=audio)


def load_run_model(path: str | Path, batch_size: int = 32) -> Pipeline | ImageGenerator:
    """A run's latest (or given) checkpoint step, as the object its task serves."""
    run = load_run(path)
    task_name = run.config.task.name
    if task_name in GENERATION_TASKS:
        return ImageGenerator.from_run(run, batch_size=batch_size)
    if task_name not in TWO_TOWER_TASKS:
        raise ValueError(
            f"mmjax.load: {path} is a {task_name!r} run; mmjax.load serves two-tower runs "
            f"(task {TWO_TOWER_TASKS}: Pipeline) and generation runs (task "
            f"{GENERATION_TASKS}: ImageGenerator) today"
        )
    return two_tower_pipeline(run, batch_size)


def two_tower_pipeline(run: LoadedRun, batch_size: int = 32) -> Pipeline:
    """A two-tower run's ``Pipeline``; a video / audio tower in the image slot gets the
    task's own eval input path (``MediaTower``)."""
    from mmjax.tasks import build_task

    config = run.config
    task = build_task(config)
    tokenizer = task.tokenizer
    eval_fn = make_image_fn(config.data, train=False)
    rng = np.random.default_rng(0)

    def image_fn(image: np.ndarray) -> np.ndarray:
        return image if eval_fn is None else eval_fn(image, rng)

    normalization = config.data.normalization

    def normalize(images: Any) -> Any:
        return normalize_images(images, normalization)

    kind = media_kind(config.model.image)
    # the eval example's host half (MediaInputs, train=False) and the task's device half
    media = MediaTower(MediaInputs(kind, config.data, False), task.tower_inputs) if kind else None
    inputs = media_preprocessing(config, kind) if kind else eval_preprocessing(config)
    return Pipeline(
        task.model,
        run.params,
        tokenizer,
        image_fn,
        normalize,
        "siglip" if config.task.loss == "sigmoid" else "clip",
        batch_size=batch_size,
        config=config,
        source=str(run.step_dir),
        preprocessing=dict(inputs, tokenizer=config.data.tokenizer),
        media=media,
    )


def load_hf(directory: Path, batch_size: int = 32) -> Pipeline:
    """A CLIP / SigLIP Hugging Face directory (weights, tokenizer, image processor)."""
    from mmjax.data.image_processing import HFImageProcessor
    from mmjax.hf import api
    from mmjax.models.towers import TwoTower

    module, variables = api.load(directory)
    if not isinstance(module, TwoTower):
        raise ValueError(
            f"mmjax.load: {directory} holds a {type(module).__name__}; Pipeline serves "
            "two-tower (CLIP / SigLIP) models"
        )
    tokenizer = TextTokenizer.from_pretrained(directory, module.text.context_length)
    proc = HFImageProcessor.from_pretrained(directory)
    return Pipeline(
        module,
        variables["params"],
        tokenizer,
        proc.resize_crop,
        proc.normalize,
        "siglip" if module.logit_bias_init is not None else "clip",
        batch_size=batch_size,
        source=str(directory),
        preprocessing=dict(
            image_size=int(module.image.image_size),
            rescale_factor=proc.rescale_factor,
            image_mean=list(proc.mean),
            image_std=list(proc.std),
            tokenizer=str(directory / "tokenizer.json"),
        ),
    )
