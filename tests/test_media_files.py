"""Real video / audio files through the ``files:`` source and the media example."""

from __future__ import annotations

import json

import ml_collections
import numpy as np
import pytest

from mmjax.data.audio import LogMel, pad_frames
from mmjax.data.media import MediaInputs
from mmjax.data.sources import open_source
from mmjax.data.transforms import BadRecord

soundfile = pytest.importorskip("soundfile")
librosa = pytest.importorskip("librosa")


def data_cfg(**kw) -> ml_collections.ConfigDict:
    audio = dict(sample_rate=8000, n_fft=256, hop=128, num_mels=32, max_frames=64)
    return ml_collections.ConfigDict(dict(num_frames=4, image_size=16, audio=audio, **kw))


def test_wav_rows_decode_resample_and_pad(tmp_path):
    t = np.arange(12000) / 16000
    wave = (0.5 * np.sin(2 * np.pi * 500 * t)).astype(np.float32)
    soundfile.write(tmp_path / "a.wav", wave, 16000, subtype="FLOAT")
    rows = [
        {"audio": "a.wav", "caption": "one mid pure beep"},
        {"audio": "gone.wav", "caption": "x"},
    ]
    (tmp_path / "clips.jsonl").write_text("\n".join(json.dumps(r) for r in rows))
    source = open_source(f"files:{tmp_path / 'clips.jsonl'}", data_cfg())
    inputs = MediaInputs("audio", data_cfg(), train=False)
    out = inputs(source[0], np.random.default_rng(0))
    ref = librosa.resample(wave, orig_sr=16000, target_sr=8000)
    want, mask = pad_frames(LogMel()(ref), 64)
    np.testing.assert_allclose(out["audio"], want, rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(out["audio_mask"], mask)
    assert mask.sum() == 1 + 6000 // 128
    with pytest.raises(BadRecord, match="unreadable audio"):
        inputs(source[1], np.random.default_rng(0))


def test_mp4_rows_decode_sample_and_resize(tmp_path):
    iio = pytest.importorskip("imageio.v3")
    pytest.importorskip("av")
    y, x = np.mgrid[:24, :32]
    frames = np.stack([np.stack([8 * x + i * 10, 8 * y, 0 * x + 128], -1) for i in range(12)])
    frames = np.clip(frames, 0, 255).astype(np.uint8)
    iio.imwrite(tmp_path / "v.mp4", frames, plugin="pyav", codec="mpeg4", fps=8)
    (tmp_path / "v.jsonl").write_text(json.dumps({"video": "v.mp4", "caption": "a clip"}))
    source = open_source(f"files:{tmp_path / 'v.jsonl'}", data_cfg())
    out = MediaInputs("video", data_cfg(), train=False)(source[0], np.random.default_rng(0))
    video = out["video"]
    assert video.shape == (4, 16, 16, 3) and video.dtype == np.uint8
    # frames 0, 4, 7, 11 sampled evenly: the red ramp's offset grows with the frame index
    red = video[..., 0].astype(np.float32).mean(axis=(1, 2))
    assert np.all(np.diff(red) > 10)
