"""Video and audio inputs of an example: record -> model-ready arrays (host side).

``MediaInputs(kind, data_cfg, train)`` turns a record's ``video`` or ``audio`` into

- ``'video'``: uint8 ``[frames, H, W, 3]`` (normalized on device, as images are);
- ``'audio'``: float32 log-mel ``[max_frames, mels]`` + bool ``'audio_mask'``
  ``[max_frames]`` (``mmjax.data.audio``; SpecAugment when training and
  ``data.audio.spec_augment`` is set).

A record's ``audio`` is a waveform array at ``data.audio.sample_rate``, or encoded audio
(bytes, or a path) that ``soundfile`` decodes (``pip install 'mmjax[audio]'``), resampled
to the sample rate; its ``video`` is a uint8 ``[frames, H, W, 3]`` array, or a file
(bytes or a path) that ``imageio`` decodes (``pip install 'mmjax[video]'``), with
``data.num_frames`` frames sampled evenly and resized to ``data.image_size``. An unusable
record raises ``BadRecord``.
"""

from __future__ import annotations

import io
from typing import Any

import numpy as np

from mmjax.data.audio import LogMel, pad_frames, spec_augment
from mmjax.data.transforms import BadRecord

SPEC_AUGMENT_KEYS = ("time_masks", "time_width", "freq_masks", "freq_width")


def read_audio(data: Any) -> tuple[np.ndarray, int]:
    """Encoded audio (bytes or a path; WAV / FLAC / OGG / MP3 ...) -> (float32 ``[samples]``
    or ``[samples, channels]``, its sample rate), as stored; ``BadRecord`` when it does not
    decode (what ``mmjax data prepare`` checks, whatever rate a run later resamples to)."""
    import soundfile

    try:
        wave, sr = soundfile.read(io.BytesIO(data) if isinstance(data, bytes) else data)
    except (RuntimeError, OSError, TypeError) as e:  # soundfile's errors for bad data
        raise BadRecord(f"unreadable audio ({type(e).__name__}: {e})") from None
    return np.asarray(wave, np.float32), int(sr)


def decode_audio(data: Any, sample_rate: int) -> np.ndarray:
    """Encoded audio (bytes or a path) -> mono float32 ``[samples]`` at ``sample_rate``."""
    wave, sr = read_audio(data)
    if wave.ndim == 2:
        wave = wave.mean(axis=1)
    if sr != sample_rate:
        import librosa

        wave = librosa.resample(wave, orig_sr=sr, target_sr=sample_rate)
    return wave.astype(np.float32)


def read_video(data: Any) -> np.ndarray:
    """A video file (bytes or a path; MP4 / WebM / AVI / MKV / MOV ...) -> every frame,
    uint8 ``[frames, H, W, C]``; ``BadRecord`` when it does not decode."""
    import imageio.v3 as iio

    try:
        frames = np.asarray(iio.imread(data, index=None))
    except Exception as e:  # imageio raises plugin-specific errors for bad files
        raise BadRecord(f"unreadable video ({type(e).__name__}: {e})") from None
    if frames.ndim != 4 or frames.shape[0] == 0:
        raise BadRecord(f"video of shape {frames.shape} is not [frames, H, W, C]")
    return frames


def sample_frames(frames: np.ndarray, num_frames: int) -> np.ndarray:
    """``[T, H, W, C]`` -> uint8 ``[num_frames, H, W, 3]``, frames sampled evenly over the
    clip (ViViT's uniform frame sampling; a short clip repeats frames)."""
    pick = np.linspace(0, frames.shape[0] - 1, num_frames).round().astype(int)
    return np.ascontiguousarray(frames[pick, ..., :3]).astype(np.uint8)


def decode_video(data: Any, num_frames: int) -> np.ndarray:
    """A video file (bytes or a path) -> uint8 ``[num_frames, H, W, 3]`` (``sample_frames``)."""
    return sample_frames(read_video(data), num_frames)


def resize_frames(video: np.ndarray, size: int) -> np.ndarray:
    """uint8 ``[T, H, W, 3]`` -> ``[T, size, size, 3]`` (bilinear, PIL; aspect not kept);
    unchanged when ``size`` is 0 or already the frames' size."""
    if not size or video.shape[1:3] == (size, size):
        return video
    import PIL.Image

    return np.stack(
        [np.asarray(PIL.Image.fromarray(f).resize((size, size), PIL.Image.BILINEAR)) for f in video]
    )


class MediaInputs:
    """``(record, rng) -> {'video'}`` or ``{'audio', 'audio_mask'}`` (see the module doc)."""

    def __init__(self, kind: str, data_cfg: Any, train: bool):
        if kind not in ("video", "audio"):
            raise ValueError(f"unknown media kind {kind!r}; known: 'video', 'audio'")
        self.kind, self.train = kind, train
        self.num_frames = int(data_cfg.get("num_frames", 0) or 0)
        self.image_size = int(data_cfg.get("image_size", 0) or 0)
        # 'middle_frame': every frame replaced by the clip's middle one (a control showing
        # what a model can do without motion)
        self.frames = data_cfg.get("video_frames", "all") or "all"
        if self.frames not in ("all", "middle_frame"):
            raise ValueError(
                f"config.data.video_frames: unknown {self.frames!r}; known: 'all', 'middle_frame'"
            )
        audio = data_cfg.get("audio") or {}
        self.front = LogMel.from_config(audio)
        self.max_frames = int(audio.get("max_frames", 0) or 0)
        if kind == "audio" and not self.max_frames:
            raise ValueError("config.data.audio.max_frames is missing (the model's max_frames)")
        augment = audio.get("spec_augment") or {}
        self.augment = {k: int(augment[k]) for k in SPEC_AUGMENT_KEYS if k in augment}

    def __call__(self, record: dict[str, Any], rng: np.random.Generator) -> dict[str, np.ndarray]:
        value = record.get(self.kind)
        if value is None:
            raise BadRecord(f"missing {self.kind}")
        if self.kind == "video":
            if isinstance(value, (bytes, str)):
                value = resize_frames(decode_video(value, self.num_frames), self.image_size)
            video = np.asarray(value)
            if video.ndim != 4 or video.shape[-1] != 3 or video.dtype != np.uint8:
                raise BadRecord(f"video {video.shape} {video.dtype} is not uint8 [T, H, W, 3]")
            if self.num_frames and video.shape[0] != self.num_frames:
                raise BadRecord(f"video has {video.shape[0]} frames, not data.num_frames")
            if self.frames == "middle_frame":
                video = np.repeat(video[len(video) // 2][None], len(video), axis=0)
            return {"video": video}
        if isinstance(value, (bytes, str)):
            value = decode_audio(value, self.front.sample_rate)
        spec = self.front(np.asarray(value, np.float32))
        spec, mask = pad_frames(spec, self.max_frames, rng if self.train else None)
        if self.train and self.augment:
            spec = spec_augment(spec, mask, rng, **self.augment)
        return {"audio": spec, "audio_mask": mask}


def media_kind(section: Any) -> str | None:
    """``'video'`` / ``'audio'`` for a config section of that ``kind``, else ``None``."""
    kind = (section or {}).get("kind")
    return kind if kind in ("video", "audio") else None


def dummy_media(
    kind: str, section: Any, batch_size: int, prefix: str = "", name: str = ""
) -> dict[str, Any]:
    """Zero inputs for a ``kind`` tower built from ``section``, under ``prefix + name``
    (``name`` defaults to ``kind``; audio adds ``..._mask``): for ``init`` and shapes."""
    key = prefix + (name or kind)
    if kind == "video":
        n = section["image_size"]
        return {key: np.zeros((batch_size, section["num_frames"], n, n, 3), np.uint8)}
    frames = section["max_frames"]
    return {
        key: np.zeros((batch_size, frames, section["num_mels"]), np.float32),
        f"{key}_mask": np.ones((batch_size, frames), np.bool_),
    }


class MediaTextExample:
    """Record ``{'video' | 'audio', 'caption'}`` -> ``MediaInputs``' arrays + ``tokens``,
    ``padding_mask`` ``[length]`` and ``label`` (the contrastive example of a video or
    audio tower)."""

    def __init__(self, tokenizer: Any, media: MediaInputs):
        self.tokenizer, self.media = tokenizer, media

    def __call__(self, record: dict[str, Any], rng: np.random.Generator) -> dict[str, np.ndarray]:
        from mmjax.data.transforms import record_caption

        ids, mask = self.tokenizer([record_caption(record)])
        out = self.media(record, rng)
        out.update(tokens=ids[0], padding_mask=mask[0], label=np.int32(record.get("label", -1)))
        return out


class WithMedia:
    """Another example function's output plus each named modality's ``MediaInputs`` arrays
    under ``features/<name>`` (and ``features/<name>_mask`` for audio): the fused models'
    extra modalities (``config.model.features.<name>.kind``)."""

    def __init__(self, example: Any, media: dict[str, MediaInputs]):
        self.example, self.media = example, media

    def __call__(self, record: dict[str, Any], rng: np.random.Generator) -> dict[str, np.ndarray]:
        out = self.example(record, rng)
        for name, inputs in self.media.items():
            arrays = inputs(record, rng)
            out[f"features/{name}"] = arrays[inputs.kind]
            if inputs.kind == "audio":
                out[f"features/{name}_mask"] = arrays["audio_mask"]
        return out
