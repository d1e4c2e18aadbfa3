"""``Pipeline``: a trained two-tower model with its tokenizer and image preprocessing.

    pipe = mmjax.load("runs/clip")                    # run workdir, step dir, HF dir, hf:ID
    probs = pipe.zero_shot(["cat.png"], ["cat", "dog"], templates="imagenet")   # [1, 2]
    img = pipe.embed_images([pil_image, uint8_array])  # [2, dim], L2-normalized
    txt = pipe.embed_texts(["a photo of a cat"])       # [1, dim]
    idx, scores = pipe.retrieve(["a red square"], images, k=5)
    vid = mmjax.load("runs/video_text").embed_videos(["clip.mp4"])   # video tower: [1, dim]
    aud = mmjax.load("runs/audio_text").embed_audio(["beep.wav"])    # audio tower: [1, dim]
    gen = mmjax.load("runs/t2i")   # a text_to_image run: ImageGenerator, not a Pipeline
    images = gen.generate(["a red circle"]).images   # uint8 [1, H, W, 3] (inference/generation.py)

Images are PIL images, file paths or uint8 ``[H, W, 3]`` arrays of any size, preprocessed as
in eval: the run's ``data.eval_transform`` (or ``data.image_processor``), then (for an image
of another size) the shorter side resized to the model's size and the centre cropped
(PIL bicubic, as transformers' CLIP image processor), then the run's normalization on the
device. Texts are tokenized by the run's tokenizer, padded to the context length. A run
whose image tower is a video or audio tower embeds videos / audio clips instead, through the
run's eval example (``mmjax.inference.media``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import tqdm

from mmjax.data.augment import resize_shorter_center_crop
from mmjax.data.tokenizer import TextTokenizer
from mmjax.data.transforms import to_rgb_uint8
from mmjax.evaluation.retrieval import topk_chunked
from mmjax.inference.media import MediaLike, MediaTower
from mmjax.inference.prompts import templates as template_list
from mmjax.models.towers import TwoTower, l2_normalize

ImageLike = Any  # PIL.Image.Image | str | Path | np.ndarray
PROGRESS_MIN = 512  # inputs from which a progress bar is shown
# what the image slot's tower embeds (config.model.image.kind) -> the method that does it
EMBED_METHOD = {"image": "embed_images", "video": "embed_videos", "audio": "embed_audio"}


def read_image(image: ImageLike) -> np.ndarray:
    """A PIL image, a file path or an array -> uint8 ``[H, W, 3]``."""
    if isinstance(image, (str, Path)):
        path = Path(image)
        if not path.is_file():
            raise FileNotFoundError(f"no image file {path}")
        return to_rgb_uint8(path.read_bytes())
    if hasattr(image, "convert") and hasattr(image, "size"):  # PIL.Image.Image
        return np.asarray(image.convert("RGB"), np.uint8)
    return to_rgb_uint8(image)


class Pipeline:
    """Two-tower (CLIP / SigLIP) inference with preprocessing; batched and jitted.

    ``kind`` is ``'clip'`` (zero-shot: softmax of ``exp(logit_scale) * cosine``) or
    ``'siglip'`` (sigmoid of ``exp(logit_scale) * cosine + logit_bias``), as transformers'
    zero-shot-image-classification pipeline computes them.
    """

    def __init__(
        self,
        model: TwoTower,
        params: Any,
        tokenizer: TextTokenizer,
        image_fn: Callable[[np.ndarray], np.ndarray],
        normalize: Callable[[jax.Array], jax.Array],
        kind: str,
        *,
        batch_size: int = 32,
        config: Any = None,
        source: str = "",
        preprocessing: dict[str, Any] | None = None,
        media: MediaTower | None = None,
    ):
        if kind not in ("clip", "siglip"):
            raise ValueError(f"Pipeline kind must be 'clip' or 'siglip', got {kind!r}")
        self.model, self.kind, self.config, self.source = model, kind, config, source
        self.params = jax.device_put(jax.tree.map(jnp.asarray, params))
        self.tokenizer, self.image_fn, self.normalize = tokenizer, image_fn, normalize
        self.batch_size = int(batch_size)
        # a video / audio tower in the image slot: embed_videos / embed_audio (no images)
        self.media = media
        self.image_size = int(getattr(model.image, "image_size", 0) or 0)  # audio: none
        self.context_length = int(tokenizer.length)
        # mean/std/rescale/tokenizer the exporters write next to the model
        self.preprocessing = dict(preprocessing or {})
        apply = model.apply
        self._image = jax.jit(
            lambda p, x: l2_normalize(apply({"params": p}, x, method=TwoTower.encode_image))
        )
        self._text = jax.jit(
            lambda p, ids, m: l2_normalize(
                apply({"params": p}, ids, m, method=TwoTower.encode_text)
            )
        )
        self._normalize = jax.jit(normalize)
        if media is not None:
            self._media = jax.jit(
                lambda p, batch: l2_normalize(
                    apply({"params": p}, *media.tower_inputs(batch), method=TwoTower.encode_image)
                )
            )

    def __repr__(self) -> str:
        tower = f"{self.media.kind} tower" if self.media else f"image {self.image_size}px"
        return f"Pipeline({self.kind}, {self.source or 'in memory'}, {tower})"

    def _images_tower(self, what: str) -> None:
        """Raises when the image slot holds a video / audio tower, which takes no images."""
        if self.media is not None:
            raise ValueError(
                f"{what}: this run's image tower is a {self.media.kind} tower "
                f"(config.model.image.kind={self.media.kind!r}), which takes no images; "
                f"use Pipeline.{EMBED_METHOD[self.media.kind]}"
            )

    # -- preprocessing -------------------------------------------------------------------

    def preprocess_images(self, images: Sequence[ImageLike]) -> np.ndarray:
        """uint8 ``[n, size, size, 3]``: each image read, transformed as in eval and, when
        of another size, resized (shorter side) and centre-cropped to the model's size."""
        self._images_tower("preprocess_images")
        out = []
        for i, image in enumerate(images):
            try:
                x = self.image_fn(read_image(image))
            except (OSError, ValueError) as e:
                raise ValueError(f"image {i} ({_describe(image)}): {e}") from e
            if x.shape[:2] != (self.image_size, self.image_size):
                x = resize_shorter_center_crop(x, self.image_size)
            out.append(x)
        if not out:
            return np.zeros((0, self.image_size, self.image_size, 3), np.uint8)
        return np.stack(out)

    def pixel_values(self, images: Sequence[ImageLike]) -> np.ndarray:
        """float32 ``[n, size, size, 3]``: the normalized images the image tower takes."""
        return np.asarray(self._normalize(jnp.asarray(self.preprocess_images(images))))

    def tokenize(self, texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """``(ids int32 [n, L], padding_mask bool [n, L])``, padded to the context length
        with the pad token (SigLIP's processor pads to max_length the same way)."""
        if isinstance(texts, str):
            raise TypeError("texts must be a list of strings, not one string")
        return self.tokenizer(list(texts))

    # -- embeddings ----------------------------------------------------------------------

    def _batched(self, n: int, fn: Callable[[slice, int], np.ndarray], what: str) -> np.ndarray:
        """Runs ``fn(rows, padded_size)`` over batches; small inputs use the next power of
        two (few compiled shapes), larger ones ``batch_size``."""
        size = min(self.batch_size, 1 << max(n - 1, 0).bit_length())
        outs = []
        bar = tqdm.tqdm(total=n, desc=what, disable=n < PROGRESS_MIN, unit=what.split()[-1])
        for start in range(0, n, size):
            rows = slice(start, min(start + size, n))
            outs.append(fn(rows, size)[: rows.stop - rows.start])
            bar.update(rows.stop - rows.start)
        bar.close()
        return np.concatenate(outs) if outs else np.zeros((0, self.model.embed_dim), np.float32)

    def embed_pixels(self, pixels: np.ndarray) -> np.ndarray:
        """float32 ``[n, size, size, 3]`` normalized images -> ``[n, dim]`` L2-normalized."""
        self._images_tower("embed_pixels")

        def run(rows: slice, size: int) -> np.ndarray:
            return np.asarray(self._image(self.params, jnp.asarray(_pad(pixels[rows], size))))

        return self._batched(len(pixels), run, "embed images")

    def embed_images(self, images: Sequence[ImageLike]) -> np.ndarray:
        """``[n, dim]`` float32, L2-normalized image embeddings."""
        self._images_tower("embed_images")
        images = list(images)

        def run(rows: slice, size: int) -> np.ndarray:
            x = jnp.asarray(_pad(self.preprocess_images(images[rows]), size))
            return np.asarray(self._image(self.params, self._normalize(x)))

        return self._batched(len(images), run, "embed images")

    def embed_videos(self, videos: Sequence[MediaLike]) -> np.ndarray:
        """``[n, dim]`` float32, L2-normalized embeddings of a video tower's run: video
        files (paths or bytes; ``data.num_frames`` frames sampled evenly, resized to
        ``data.image_size``) or uint8 ``[frames, H, W, 3]`` arrays (sampled and resized the
        same way), then normalized as in the run's eval."""
        return self._embed_media("video", videos)

    def embed_audio(self, clips: Sequence[MediaLike]) -> np.ndarray:
        """``[n, dim]`` float32, L2-normalized embeddings of an audio tower's run: audio
        files (paths or bytes; mixed to mono, resampled to ``data.audio.sample_rate``) or
        mono float waveforms ``[samples]`` at that rate, as the run's eval log-mels
        ``[max_frames, mels]`` (cropped or zero-padded, with the frame mask)."""
        return self._embed_media("audio", clips)

    def _embed_media(self, kind: str, values: Sequence[MediaLike]) -> np.ndarray:
        if isinstance(values, (str, Path, bytes)):
            raise TypeError(f"{EMBED_METHOD[kind]}: pass a list of inputs, not one")
        have = self.media.kind if self.media else "image"
        if have != kind:
            raise ValueError(
                f"{EMBED_METHOD[kind]}: this run's image tower is of kind {have!r}, not "
                f"{kind!r} (config.model.image.kind); use Pipeline.{EMBED_METHOD[have]}"
            )
        media, values = self.media, list(values)

        def run(rows: slice, size: int) -> np.ndarray:
            batch = {
                k: jnp.asarray(_pad(v, size)) for k, v in media.preprocess(values[rows]).items()
            }
            return np.asarray(self._media(self.params, batch))

        return self._batched(len(values), run, f"embed {kind}")

    def embed_texts(self, texts: Sequence[str]) -> np.ndarray:
        """``[n, dim]`` float32, L2-normalized text embeddings."""
        ids, mask = self.tokenize(texts)
        return self.embed_tokens(ids, mask)

    def embed_tokens(self, ids: np.ndarray, mask: np.ndarray) -> np.ndarray:
        """int32 ids / bool padding mask ``[n, L]`` -> ``[n, dim]`` L2-normalized."""

        def run(rows: slice, size: int) -> np.ndarray:
            out = self._text(
                self.params, jnp.asarray(_pad(ids[rows], size)), jnp.asarray(_pad(mask[rows], size))
            )
            return np.asarray(out)

        return self._batched(len(ids), run, "embed texts")

    # -- tasks ---------------------------------------------------------------------------

    def class_embeddings(
        self, class_names: Sequence[str], templates: str | Sequence[str] | None = None
    ) -> np.ndarray:
        """``[classes, dim]``: per class the L2-normalized mean of its prompts' embeddings
        (prompt ensembling, CLIP's recipe); one template gives the prompt's embedding."""
        names = [str(c) for c in class_names]
        if not names:
            raise ValueError("zero_shot needs at least one class name")
        temps = template_list(templates)
        emb = self.embed_texts([t.format(c) for c in names for t in temps])
        if len(temps) == 1:
            return emb
        mean = emb.reshape(len(names), len(temps), -1).mean(1)
        return mean / np.linalg.norm(mean, axis=-1, keepdims=True)

    def logits(self, image_emb: np.ndarray, text_emb: np.ndarray) -> np.ndarray:
        """``[images, texts]``: ``exp(logit_scale) * cosine`` (+ ``logit_bias`` for SigLIP)."""
        scale = float(np.exp(np.asarray(self.params["logit_scale"])))
        logits = scale * (np.asarray(image_emb, np.float32) @ np.asarray(text_emb, np.float32).T)
        if self.kind == "siglip":
            logits = logits + float(np.asarray(self.params["logit_bias"]))
        return logits

    def zero_shot(
        self,
        images: Sequence[ImageLike],
        class_names: Sequence[str],
        templates: str | Sequence[str] | None = None,
    ) -> np.ndarray:
        """``[n, classes]`` probabilities: softmax over classes (CLIP) or per-class sigmoid
        (SigLIP). ``templates``: ``None`` (class names as they are), ``'imagenet'`` (CLIP's
        80), ``'simple_imagenet'`` (7) or a list with one ``{}`` slot each."""
        classes = self.class_embeddings(class_names, templates)
        logits = self.logits(self.embed_images(images), classes)
        if self.kind == "siglip":
            return 1.0 / (1.0 + np.exp(-logits))
        logits = logits - logits.max(axis=1, keepdims=True)
        e = np.exp(logits)
        return e / e.sum(axis=1, keepdims=True)

    def retrieve(
        self, texts: Sequence[str], images: Sequence[ImageLike], k: int = 5
    ) -> tuple[np.ndarray, np.ndarray]:
        """For each text its ``k`` best images: ``(indices int [texts, k], cosine [texts, k])``,
        best first (computed in chunks on the device)."""
        return topk_chunked(self.embed_texts(texts), self.embed_images(images), k)

    def caption(self, images: Sequence[ImageLike], beam_size: int = 1) -> list[str]:
        raise NotImplementedError(
            f"caption: this is a two-tower {self.kind} model, which does not generate text; "
            "captioning needs a model trained with task 'caption' (configs/caption_coca.py)"
        )

    def answer(self, images: Sequence[ImageLike], questions: Sequence[str]) -> list[str]:
        raise NotImplementedError(
            f"answer: this is a two-tower {self.kind} model, which has no answer head; "
            "VQA needs a model trained with task 'classify' on questions "
            "(configs/vqa_cross_attention.py)"
        )


def _pad(x: np.ndarray, size: int) -> np.ndarray:
    """Rows padded with zeros to ``size`` (one compiled shape per batch size)."""
    pad = size - len(x)
    if pad <= 0:
        return x
    return np.concatenate([x, np.zeros((pad, *x.shape[1:]), x.dtype)])


def _describe(image: ImageLike) -> str:
    if isinstance(image, (str, Path)):
        return str(image)
    shape = getattr(image, "shape", None) or getattr(image, "size", None)
    return f"{type(image).__name__} {shape}"
