"""Built-in three-modality sentiment posts: a drawn face, a voice contour and a short text.

Each post has three cues, each with a code in {0, 1, 2}:

- face (``FACES``): neutral / smiling / frowning mouth on a drawn face (jittered size,
  position and colour over a noisy background);
- voice (``VOICES``): flat / rising / falling pitch contour of a 0.5-0.7 s hum;
- text (``TEXTS``): a short phrase that reads neutral, positive or negative.

The label (``LABELS``: neutral, positive, negative) follows a fixed rule (``label_of``):
when the face and the voice agree (a smile with a rising voice, a frown with a falling one,
a neutral face with a flat one) they set the sentiment whatever the words say, so "i love
it" said with a frown and a falling voice is negative (sarcasm); when they disagree, the
label is ``(face + voice + text) % 3``, in which each of the three cues changes it. With
uniform cues the best (Bayes) accuracy from the face or the voice alone is 5/9, from the
text alone 1/3, and from any two cues 5/9 (face and voice together know the label only
when they agree, a third of the posts), while all three fix it. Face and voice alone
carry some signal (the agreeing cases), which is what lets gradient descent find the
rule: under the pure Latin cube ``(face + voice + text) % 3`` no cue is correlated with
the label, and every fused model we trained from scratch (gated, late, tensor, graph; 600
steps) stayed at the chance loss. It is a test bed for fusion, not a model of how people
express sentiment. Generated from ``(seed, split, index)`` like
``synthetic.SyntheticShapes`` (``train`` and ``eval`` from disjoint streams; each cue
drawn uniformly).

A record is ``{'image': uint8 [size, size, 3], 'audio': float32 [samples], 'caption',
'label', 'cues': int32 [3]}``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from mmjax.data.indexed_source import IndexedSource

LABELS = ("neutral", "positive", "negative")
FACES = ("neutral", "smile", "frown")
VOICES = ("flat", "rising", "falling")
TEXTS = (
    ("what a day", "here we go", "well then", "it is what it is"),
    ("i love it", "this is great", "so happy", "best day ever"),
    ("i hate it", "this is awful", "so sad", "worst day ever"),
)


def caption_words() -> list[str]:
    return sorted({w for group in TEXTS for text in group for w in text.split()})


def label_of(face: int, voice: int, text: int) -> int:
    """The post's label index into ``LABELS`` from its three cue codes (module docstring)."""
    if face == voice:
        return face
    return (face + voice + text) % 3


def draw_face(mouth: int, size: int, rng: np.random.Generator) -> np.ndarray:
    """uint8 ``[size, size, 3]``: a round face with two eyes and a mouth that is a line
    (0), a smile (1: an arc curving up at the ends) or a frown (2)."""
    grid = np.arange(size, dtype=np.float32) + 0.5
    yy, xx = np.meshgrid(grid, grid, indexing="ij")
    r = rng.uniform(0.36, 0.44) * size
    cy, cx = size / 2 + rng.uniform(-0.05, 0.05, 2) * size
    y, x = (yy - cy) / r, (xx - cx) / r  # face coordinates: the face is the unit disc
    face = y * y + x * x <= 1.0
    eyes = ((y + 0.3) ** 2 + (np.abs(x) - 0.35) ** 2) <= 0.12**2
    curve = {0: 0.0, 1: 0.45, 2: -0.45}[mouth]
    mouth_y = 0.45 - curve * (1 - (x / 0.5) ** 2)  # a parabola through the mouth corners
    mouth_px = (np.abs(y - mouth_y) <= 0.09) & (np.abs(x) <= 0.5)
    noise = rng.standard_normal((size, size, 3), dtype=np.float32)
    skin = np.asarray([235, 200, 60], np.float32) + rng.uniform(-25, 25, 3).astype(np.float32)
    level = np.float32(rng.uniform(20, 120))
    image = np.where(face[..., None], skin + 6 * noise, level + 14 * noise)
    image = np.where((face & (eyes | mouth_px))[..., None], 30 + 6 * noise, image)
    return np.clip(image, 0, 255).astype(np.uint8)


def voice(contour: int, sample_rate: int, rng: np.random.Generator) -> np.ndarray:
    """float32 ``[samples]``: a hum whose pitch stays flat (0), rises (1) or falls (2) by
    about an octave, with harmonics and a little noise."""
    samples = int(rng.uniform(0.5, 0.7) * sample_rate)
    t = np.arange(samples) / samples
    base = rng.uniform(180, 260)
    shape = {0: np.zeros_like(t), 1: t, 2: 1 - t}[contour]
    octave = 0.0 if contour == 0 else 1.0
    freq = base * 2 ** (octave * shape - (0.5 if contour else 0.0) + rng.uniform(-0.1, 0.1))
    phase = 2 * np.pi * np.cumsum(freq) / sample_rate
    wave = np.sin(phase) + 0.5 * np.sin(2 * phase) + 0.25 * np.sin(3 * phase)
    envelope = np.minimum(1.0, np.minimum(t, 1 - t) * 10)
    wave = wave * envelope + 0.03 * rng.standard_normal(samples)
    return (0.4 * wave * rng.uniform(0.5, 1.0)).astype(np.float32)


class SentimentPosts(IndexedSource):
    """Random-access source of three-modality posts (a grain ``RandomAccessDataSource``)."""

    options = {"image_size": 32, "sample_rate": 8000}
    salt = 41

    def __getitem__(self, index: int) -> dict[str, Any]:
        rng = self.record_rng(int(index))
        face, tone, text = (int(c) for c in rng.integers(3, size=3))
        phrases = TEXTS[text]
        return {
            "image": draw_face(face, self.image_size, rng),
            "audio": voice(tone, self.sample_rate, rng),
            "caption": phrases[int(rng.integers(len(phrases)))],
            "label": label_of(face, tone, text),
            "cues": np.asarray([face, tone, text], np.int32),
        }
