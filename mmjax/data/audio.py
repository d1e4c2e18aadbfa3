"""Audio front end of the input pipeline: log-mel spectrograms, padding, SpecAugment.

``LogMel`` turns a mono waveform into a log-mel spectrogram ``[frames, mels]`` with
librosa (``pip install 'mmjax[audio]'``); ``pad_frames`` fits it to the model's
``max_frames`` (zero padding + a frame mask; longer clips are cropped, at random when
training); ``spec_augment`` applies SpecAugment's time and frequency masking (Park et
al. 2019) as a training augmentation. All run on the host, per record, drawing only
from the record's generator so a resumed run sees the same inputs.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

LOG_FLOOR = 1e-6  # log(mel power + floor): silence stays finite


@dataclasses.dataclass(frozen=True)
class LogMel:
    """Waveform float ``[samples]`` at ``sample_rate`` -> float32 ``[frames, num_mels]``,
    ``log(mel power + LOG_FLOOR)`` of a centred, zero-padded Hann STFT (librosa's
    ``feature.melspectrogram``: Slaney mel scale, area-normalized filters);
    ``frames = 1 + samples // hop``."""

    sample_rate: int = 8000
    n_fft: int = 256
    hop: int = 128
    num_mels: int = 32
    fmin: float = 0.0
    fmax: float | None = None

    def __call__(self, wave: np.ndarray) -> np.ndarray:
        import librosa

        wave = np.asarray(wave, np.float32)
        if wave.ndim != 1 or wave.size == 0:
            raise ValueError(f"audio must be a non-empty mono waveform [samples], got {wave.shape}")
        mel = librosa.feature.melspectrogram(
            y=wave,
            sr=self.sample_rate,
            n_fft=self.n_fft,
            hop_length=self.hop,
            n_mels=self.num_mels,
            fmin=self.fmin,
            fmax=self.fmax,
            center=True,
            pad_mode="constant",
            power=2.0,
        )
        return np.log(mel + LOG_FLOOR).T.astype(np.float32)

    def frames(self, samples: int) -> int:
        """Frames of a clip of ``samples`` samples."""
        return 1 + samples // self.hop

    @classmethod
    def from_config(cls, cfg: Any) -> LogMel:
        """From ``config.data.audio`` (keys as the fields; missing ones keep the defaults)."""
        known = {f.name for f in dataclasses.fields(cls)}
        given = {k: v for k, v in dict(cfg or {}).items() if k in known}
        return cls(**given)


def pad_frames(
    spec: np.ndarray, max_frames: int, rng: np.random.Generator | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """``[frames, mels]`` -> ``([max_frames, mels], bool mask [max_frames])``: shorter
    spectrograms are zero-padded at the end (mask False there), longer ones cropped to
    ``max_frames`` at a random start when ``rng`` is given, else from the start."""
    frames = spec.shape[0]
    if frames >= max_frames:
        start = int(rng.integers(frames - max_frames + 1)) if rng is not None else 0
        return spec[start : start + max_frames], np.ones(max_frames, np.bool_)
    out = np.zeros((max_frames, spec.shape[1]), spec.dtype)
    out[:frames] = spec
    return out, np.arange(max_frames) < frames


def spec_augment(
    spec: np.ndarray,
    mask: np.ndarray,
    rng: np.random.Generator,
    time_masks: int = 2,
    time_width: int = 4,
    freq_masks: int = 2,
    freq_width: int = 4,
) -> np.ndarray:
    """SpecAugment masking of a ``[frames, mels]`` spectrogram: ``time_masks`` bands of
    ``[0, time_width]`` frames (inside the real frames of ``mask``) and ``freq_masks``
    bands of ``[0, freq_width]`` mel bins, each set to the mean of the real frames."""
    out = spec.copy()
    real = int(mask.sum())
    fill = out[:real].mean() if real else 0.0
    for _ in range(time_masks):
        width = int(rng.integers(time_width + 1))
        start = int(rng.integers(max(real - width, 0) + 1))
        out[start : start + width] = fill
    for _ in range(freq_masks):
        width = int(rng.integers(freq_width + 1))
        start = int(rng.integers(spec.shape[1] - width + 1))
        out[:real, start : start + width] = fill
    return out
