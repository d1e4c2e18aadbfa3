"""Real video / audio files (MP4, WAV written here) through the ``files:`` and ``wds:``
sources, ``mmjax data prepare`` -> ``arrayrecord:``, and the media example."""

from __future__ import annotations

import json
from pathlib import Path

import ml_collections
import numpy as np
import pytest

from mmjax.data.audio import LogMel, pad_frames
from mmjax.data.media import MediaInputs, MediaTextExample
from mmjax.data.pipeline import BadRecordError, train_dataset
from mmjax.data.prepare import prepare
from mmjax.data.sources import open_source
from mmjax.data.tokenizer import TextTokenizer
from mmjax.data.transforms import BadRecord
from tests.source_data import _tar

soundfile = pytest.importorskip("soundfile")
librosa = pytest.importorskip("librosa")


def data_cfg(**kw) -> ml_collections.ConfigDict:
    audio = dict(sample_rate=8000, n_fft=256, hop=128, num_mels=32, max_frames=64)
    return ml_collections.ConfigDict(dict(num_frames=4, image_size=16, audio=audio, **kw))


def write_beep(path: Path, samples: int = 12000, hz: float = 500) -> np.ndarray:
    """A 16 kHz float WAV of a sine at ``hz`` -> its waveform float32 ``[samples]``."""
    t = np.arange(samples) / 16000
    wave = (0.5 * np.sin(2 * np.pi * hz * t)).astype(np.float32)
    soundfile.write(path, wave, 16000, subtype="FLOAT")
    return wave


def write_clip(path: Path, frames: int = 12, shift: int = 10) -> np.ndarray:
    """An MPEG-4 clip of 24 x 32 frames whose red ramp moves by ``shift`` a frame ->
    its frames uint8 ``[frames, 24, 32, 3]`` (before lossy coding)."""
    iio = pytest.importorskip("imageio.v3")
    pytest.importorskip("av")
    y, x = np.mgrid[:24, :32]
    video = np.stack([np.stack([8 * x + i * shift, 8 * y, 0 * x + 128], -1) for i in range(frames)])
    video = np.clip(video, 0, 255).astype(np.uint8)
    iio.imwrite(path, video, plugin="pyav", codec="mpeg4", fps=8)
    return video


def write_jsonl(path: Path, rows: list[dict]) -> str:
    path.write_text("\n".join(json.dumps(r) for r in rows))
    return f"files:{path}"


def test_wav_rows_decode_resample_and_pad(tmp_path):
    wave = write_beep(tmp_path / "a.wav")
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
    write_clip(tmp_path / "v.mp4")
    (tmp_path / "v.jsonl").write_text(json.dumps({"video": "v.mp4", "caption": "a clip"}))
    source = open_source(f"files:{tmp_path / 'v.jsonl'}", data_cfg())
    out = MediaInputs("video", data_cfg(), train=False)(source[0], np.random.default_rng(0))
    video = out["video"]
    assert video.shape == (4, 16, 16, 3) and video.dtype == np.uint8
    # frames 0, 4, 7, 11 sampled evenly: the red ramp's offset grows with the frame index
    red = video[..., 0].astype(np.float32).mean(axis=(1, 2))
    assert np.all(np.diff(red) > 10)


def decoded(kind: str, record: dict) -> dict[str, np.ndarray]:
    """The eval example's arrays of ``record``'s video / audio."""
    return MediaInputs(kind, data_cfg(), train=False)(record, np.random.default_rng(0))


def assert_same_arrays(a: dict, b: dict) -> None:
    assert sorted(a) == sorted(b)
    for k in a:
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)


@pytest.fixture
def media_dir(tmp_path) -> Path:
    """``v.mp4`` (a moving ramp), ``a.wav`` (a 500 Hz beep), ``bad.mp4`` / ``bad.wav``
    (bytes that no decoder reads) and ``clips.jsonl`` naming the good two."""
    write_clip(tmp_path / "v.mp4")
    write_beep(tmp_path / "a.wav")
    (tmp_path / "bad.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42 cut short")
    (tmp_path / "bad.wav").write_bytes(b"RIFF....WAVEfmt nonsense")
    rows = [
        {"video": "v.mp4", "caption": "a ramp moves"},
        {"audio": "a.wav", "caption": "one mid beep"},
    ]
    write_jsonl(tmp_path / "clips.jsonl", rows)
    return tmp_path


def media_shards(root: Path) -> tuple[str, str]:
    """``video.tar`` and ``audio.tar``, each of sample 000 (``v.mp4`` / ``a.wav`` + a txt
    caption) and 001 (``bad.mp4`` / ``bad.wav`` + a json caption and label) -> their
    ``wds:`` specs."""
    specs = []
    for kind, good, caption in (
        ("video", "v.mp4", b"a ramp moves"),
        ("audio", "a.wav", b"one mid beep"),
    ):
        ext = good.split(".")[1]
        members = [
            (f"000.{ext}", (root / good).read_bytes()),
            ("000.txt", caption),
            (f"001.{ext}", (root / f"bad.{ext}").read_bytes()),
            ("001.json", b'{"caption": "a broken clip", "label": 3}'),
        ]
        _tar(root / f"{kind}.tar", members)
        specs.append(f"wds:{root / kind}.tar")
    return specs[0], specs[1]


def test_wds_video_and_audio_members_decode_like_files_rows(media_dir):
    files = open_source(f"files:{media_dir / 'clips.jsonl'}", data_cfg())
    video_spec, audio_spec = media_shards(media_dir)
    videos, audios = open_source(video_spec, data_cfg()), open_source(audio_spec, data_cfg())
    # the member's bytes, kept encoded, under the field a files: row names its file by
    assert videos[0]["video"] == (media_dir / "v.mp4").read_bytes()
    assert videos[0]["caption"] == "a ramp moves" and "image" not in videos[0]
    assert audios[1]["label"] == 3 and "audio" in audios[1]
    assert_same_arrays(decoded("video", videos[0]), decoded("video", files[0]))
    assert_same_arrays(decoded("audio", audios[0]), decoded("audio", files[1]))
    with pytest.raises(BadRecord, match="unreadable video"):
        decoded("video", videos[1])
    with pytest.raises(BadRecord, match="unreadable audio"):
        decoded("audio", audios[1])


def test_wds_training_stream_names_the_bad_media_member(media_dir):
    """The streamed training split decodes the good sample and, under bad_records='fail',
    stops at the undecodable one naming its shard and key."""
    video_spec, _ = media_shards(media_dir)
    cfg = data_cfg(source=video_spec, bad_records="fail", shuffle_buffer=0, num_workers=0)
    example = MediaTextExample(TextTokenizer.synthetic(12), MediaInputs("video", cfg, True))
    it = iter(train_dataset(cfg, None, global_batch=1, seed=0, example=example))
    first = next(it)
    assert_same_arrays(
        {"video": first["video"][0]}, decoded("video", {"video": str(media_dir / "v.mp4")})
    )
    with pytest.raises(BadRecordError, match=r"video\.tar:001: unreadable video"):
        next(it)


def test_prepare_keeps_media_encoded_and_arrayrecord_decodes_as_files(media_dir):
    """files: and wds: video / audio -> ArrayRecord: the same bytes, the same decoded
    arrays; a missing or undecodable input is left out and named in the manifest."""
    rows = [
        {"video": "v.mp4", "caption": "a ramp moves"},
        {"audio": "a.wav", "caption": "one mid beep"},
        {"video": "gone.mp4", "caption": "x"},
        {"audio": "bad.wav", "caption": "y"},
    ]
    spec = write_jsonl(media_dir / "mixed.jsonl", rows)
    manifest = prepare(spec, media_dir / "prepared", shard_size=3, progress=False)
    assert (manifest["num_records"], manifest["num_bad"]) == (2, 2)
    reasons = [b["reason"] for b in manifest["bad"]]
    assert "missing video file" in reasons[0] and "gone.mp4" in reasons[0]
    assert "mixed.jsonl:4: unreadable audio" in reasons[1]
    files = open_source(spec, data_cfg())
    back = open_source(f"arrayrecord:{media_dir / 'prepared'}", data_cfg())
    assert len(back) == 2
    assert back[0]["video"] == (media_dir / "v.mp4").read_bytes()  # no path: the bytes
    assert back[1]["caption"] == "one mid beep" and back[1]["key"] == files[1]["key"]
    assert_same_arrays(decoded("video", back[0]), decoded("video", files[0]))
    assert_same_arrays(decoded("audio", back[1]), decoded("audio", files[1]))

    video_spec, audio_spec = media_shards(media_dir)
    for kind, wds in (("video", video_spec), ("audio", audio_spec)):
        out = media_dir / f"prepared_{kind}"
        manifest = prepare(wds, out, shard_size=5, progress=False)
        assert (manifest["num_records"], manifest["num_bad"]) == (1, 1)
        assert f"{kind}.tar:001: unreadable {kind}" in manifest["bad"][0]["reason"]
        back = open_source(f"arrayrecord:{out}", data_cfg())
        assert_same_arrays(
            decoded(kind, back[0]), decoded(kind, files[0 if kind == "video" else 1])
        )


# -- mmjax.load of a video / audio tower's run ----------------------------------------------

SHORT_RUN = ["train.steps=2", "optim.warmup_steps=1"]  # trained weights, compiled quickly


@pytest.fixture(scope="module")
def video_run(tmp_path_factory) -> Path:
    from tests.test_inference import train_tiny

    workdir = tmp_path_factory.mktemp("video_run")
    train_tiny("video_text_synthetic.py:tiny", workdir, SHORT_RUN)
    return workdir


@pytest.fixture(scope="module")
def audio_run(tmp_path_factory) -> Path:
    from tests.test_inference import train_tiny

    workdir = tmp_path_factory.mktemp("audio_run")
    train_tiny("audio_text_synthetic.py:tiny", workdir, SHORT_RUN)
    return workdir


def eval_embedding(run: Path, record: dict) -> np.ndarray:
    """``record``'s image-slot embedding ``[dim]`` the way the run's eval computes it: the
    task's eval example, then ``task.eval_step`` (jitted, as the trainer runs it) on a batch
    of one."""
    import jax

    from mmjax.inference.run_loading import load_run
    from mmjax.tasks import build_task

    loaded = load_run(run)
    task = build_task(loaded.config)
    example = task.make_example(loaded.config.data, train=False)
    row = example(dict(record, caption="a red circle moves"), np.random.default_rng(0))
    batch = {k: np.asarray(v)[None] for k, v in row.items()}
    return np.asarray(jax.jit(task.eval_step)(loaded.params, batch)["image"])[0]


def test_load_video_run_embeds_files_and_arrays_as_its_eval(video_run, tmp_path):
    import mmjax
    from mmjax.data.media import read_video

    write_clip(tmp_path / "v.mp4")
    write_clip(tmp_path / "w.mp4", shift=-10)  # the ramp moves the other way
    pipe = mmjax.load(video_run)
    assert pipe.preprocessing["num_frames"] == 4 and pipe.preprocessing["image_size"] == 16
    frames = read_video(str(tmp_path / "v.mp4"))  # all 12 frames, 24 x 32: sampled + resized
    emb = pipe.embed_videos([tmp_path / "v.mp4", frames, str(tmp_path / "w.mp4")])
    assert emb.shape == (3, 32)
    want = eval_embedding(video_run, {"video": str(tmp_path / "v.mp4")})
    np.testing.assert_allclose(emb[0], want, atol=1e-5)
    np.testing.assert_allclose(emb[1], emb[0], atol=1e-6)
    assert np.abs(emb[2] - emb[0]).max() > 1e-3
    with pytest.raises(ValueError, match=r"video tower \(config.model.image.kind='video'\)"):
        pipe.embed_images([np.zeros((16, 16, 3), np.uint8)])
    with pytest.raises(ValueError, match=r"video 1 \(.*gone.mp4\): no video file"):
        pipe.embed_videos([frames, tmp_path / "gone.mp4"])


def test_load_audio_run_embeds_files_and_waveforms_as_its_eval(audio_run, tmp_path):
    import mmjax
    from mmjax.data.media import decode_audio

    write_beep(tmp_path / "a.wav")  # 0.75 s: 24 of the model's 32 frames, the rest masked
    write_beep(tmp_path / "b.wav", samples=6000, hz=2000)
    pipe = mmjax.load(audio_run)
    assert pipe.preprocessing["audio"]["max_frames"] == 32
    wave = decode_audio(str(tmp_path / "a.wav"), 8000)  # at the run's sample rate
    emb = pipe.embed_audio([tmp_path / "a.wav", wave, tmp_path / "b.wav"])
    assert emb.shape == (3, 32)
    want = eval_embedding(audio_run, {"audio": str(tmp_path / "a.wav")})
    np.testing.assert_allclose(emb[0], want, atol=1e-5)
    np.testing.assert_allclose(emb[1], emb[0], atol=1e-6)
    assert np.abs(emb[2] - emb[0]).max() > 1e-3
    with pytest.raises(ValueError, match="of kind 'audio', not 'video'.*embed_audio"):
        pipe.embed_videos([tmp_path / "a.wav"])
    from mmjax.inference.export_stablehlo import export_pipeline

    with pytest.raises(NotImplementedError, match="tower of kind 'audio'"):
        export_pipeline(pipe, tmp_path / "served")
    from mmjax.inference.export_stablehlo import export_pipeline

    with pytest.raises(NotImplementedError, match="tower of kind 'audio'"):
        export_pipeline(pipe, tmp_path / "served")
    (tmp_path / "bad.wav").write_bytes(b"RIFF....WAVEfmt nonsense")
    with pytest.raises(ValueError, match=r"audio 0 \(.*bad.wav\): unreadable audio"):
        pipe.embed_audio([tmp_path / "bad.wav"])
