"""Built-in audio-text data: short clips of beeps with a pitch, a count and a timbre.

A clip (``sample_rate`` Hz, 0.7-1 s, so clips differ in length) holds 1-4 beeps
(``COUNTS``) at a low / mid / high pitch (``PITCHES``, jittered) with a sine, square or
noise timbre (``TIMBRES``; the noise is narrow-band around the pitch), at a random
onset and loudness over a little background noise. Captions name all three: "three
high buzzy beeps". 4 x 3 x 3 = 36 distinct captions. Generated from
``(seed, split, index)`` like ``synthetic.SyntheticShapes``: the ``eval`` split
enumerates the combinations (permuted), ``train`` draws them from another stream.

A record is ``{'audio': float32 [samples], 'caption', 'label'}``.
"""

from __future__ import annotations

import itertools
from typing import Any

import numpy as np

from mmjax.data.indexed_source import IndexedSource

COUNTS = {"one": 1, "two": 2, "three": 3, "four": 4}
PITCHES = {"low": 300.0, "mid": 700.0, "high": 1600.0}  # Hz
TIMBRES = {"pure": "sine", "buzzy": "square", "hissing": "noise"}
COMBINATIONS: tuple[tuple[str, str, str], ...] = tuple(itertools.product(COUNTS, PITCHES, TIMBRES))
BEEP_S, GAP_S = 0.08, 0.07  # one beep, and the silence between two


def caption(count: str, pitch: str, timbre: str) -> str:
    noun = "beep" if count == "one" else "beeps"
    return f"{count} {pitch} {timbre} {noun}"


def caption_words() -> list[str]:
    return sorted({*COUNTS, *PITCHES, *TIMBRES, "beep", "beeps"})


def tone(freq: float, samples: int, sample_rate: int, timbre: str, rng: np.random.Generator):
    """``samples`` of a tone at ``freq`` Hz: ``'sine'``, ``'square'`` or ``'noise'`` (white
    noise ring-modulated by the tone: a band around ``freq``)."""
    t = np.arange(samples) / sample_rate
    phase = 2 * np.pi * freq * t + rng.uniform(0, 2 * np.pi)
    if timbre == "sine":
        return np.sin(phase)
    if timbre == "square":
        return 0.6 * np.sign(np.sin(phase))
    return 1.2 * np.sin(phase) * rng.standard_normal(samples)


class Sounds(IndexedSource):
    """Random-access source of beep clips (a grain ``RandomAccessDataSource``)."""

    options = {"sample_rate": 8000}
    salt, order_salt, num_labels = 37, 7901, len(COMBINATIONS)

    def __getitem__(self, index: int) -> dict[str, Any]:
        index = int(index)
        rng = self.record_rng(index)
        label = self.label(index, rng)
        count, pitch, timbre = COMBINATIONS[label]
        sr = self.sample_rate
        wave = clip(COUNTS[count], PITCHES[pitch], TIMBRES[timbre], sr, rng)
        return {"audio": wave, "caption": caption(count, pitch, timbre), "label": label}


def clip(
    beeps: int, freq: float, timbre: str, sample_rate: int, rng: np.random.Generator
) -> np.ndarray:
    """float32 ``[samples]``: ``beeps`` beeps of ``tone`` (pitch jittered by +-8 %) at a
    random onset in a 0.7-1 s clip over background noise."""
    samples = int(rng.uniform(0.7, 1.0) * sample_rate)
    beep, gap = int(BEEP_S * sample_rate), int(GAP_S * sample_rate)
    span = beeps * beep + (beeps - 1) * gap
    onset = int(rng.integers(max(samples - span, 0) + 1))
    wave = 0.02 * rng.standard_normal(samples)
    freq *= rng.uniform(0.92, 1.08)
    ramp = np.minimum(1.0, np.minimum(np.arange(beep), np.arange(beep)[::-1]) / (0.1 * beep))
    for i in range(beeps):
        start = onset + i * (beep + gap)
        wave[start : start + beep] += tone(freq, beep, sample_rate, timbre, rng) * ramp
    return (wave * rng.uniform(0.3, 0.8)).astype(np.float32)
