"""Audio and video encoders on real files written here: decoding (WAV, FLAC, OGG, MP3), mono mix, resampling,
cut/pad, librosa descriptors, tiny wav2vec2 and Whisper through ``hf_audio``, MP4 frame sampling and pooling,
the demo's speech and clips, and an end-to-end ``features`` run on the demo with audio and video.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

sf = pytest.importorskip("soundfile")
cv2 = pytest.importorskip("cv2")
torch = pytest.importorskip("torch")

from mmpipe.ingest.demo import (demo_audio_bytes, demo_sample, demo_video_bytes, demo_video_frames, make_demo,  # noqa: E402
                         write_mp4)
from mmpipe.encoders import build_encoder  # noqa: E402
from mmpipe.encoders.audio_io import load_audio  # noqa: E402
from mmpipe.encoders.images import load_rgb  # noqa: E402
from mmpipe.encoders.video import iter_frames  # noqa: E402
from mmpipe.core.errors import BadSampleError, ConfigError  # noqa: E402
from tiny_models import tiny_image_model  # noqa: E402

SR_IN = 22050


@pytest.fixture(scope="module", autouse=True)
def one_torch_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def tone(freq: float, seconds: float, sr: int = SR_IN, amp: float = 0.5) -> np.ndarray:
    t = np.arange(int(round(seconds * sr))) / sr
    return (amp * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def peak_hz(y: np.ndarray, sr: int) -> float:
    spec = np.abs(np.fft.rfft(y * np.hanning(y.size)))
    return float(np.fft.rfftfreq(y.size, 1 / sr)[spec.argmax()])


def can_write(fmt: str) -> bool:
    return fmt.upper() in sf.available_formats()


@pytest.fixture(scope="module")
def clips(tmp_path_factory) -> dict[str, Path]:
    """Stereo 440 Hz (left 0.6, right 0.2, plus faint noise) in every format this libsndfile writes, and odd cases."""
    d = tmp_path_factory.mktemp("audio")
    hiss = np.random.default_rng(0).normal(0, 0.01, int(1.5 * SR_IN)).astype(np.float32)  # broadband content
    stereo = np.stack([tone(440, 1.5, amp=0.6) + hiss, tone(440, 1.5, amp=0.2) + hiss], axis=1)
    out = {}
    for ext, fmt in (("wav", "WAV"), ("flac", "FLAC"), ("ogg", "OGG"), ("mp3", "MP3")):
        if can_write(fmt):
            out[ext] = d / f"stereo.{ext}"
            sf.write(out[ext], stereo, SR_IN)
    out["short8k"] = d / "short8k.wav"
    sf.write(out["short8k"], tone(300, 0.5, sr=8000), 8000)
    out["high"] = d / "high.wav"
    sf.write(out["high"], tone(330, 2.0) + 0.2 * tone(660, 2.0), SR_IN)
    out["low"] = d / "low.wav"
    sf.write(out["low"], tone(110, 2.0) + 0.2 * tone(220, 2.0), SR_IN)
    out["silence"] = d / "silence.wav"
    sf.write(out["silence"], np.zeros(SR_IN, np.float32), SR_IN)
    out["tiny"] = d / "tiny.wav"
    sf.write(out["tiny"], tone(440, 0.02), SR_IN)
    out["empty"] = d / "empty.wav"
    out["empty"].write_bytes(b"")
    out["garbage"] = d / "garbage.wav"
    out["garbage"].write_bytes(b"RIFF not really a wave file" * 10)
    return out


# --------------------------------------------------------------------------- decoding
@pytest.mark.parametrize("ext", ["wav", "flac", "ogg", "mp3"])
def test_decode_formats_mono_mix_and_resample(clips, ext):
    if ext not in clips:
        pytest.skip(f"this libsndfile cannot write {ext}")
    y = load_audio(clips[ext], 16000)
    assert y.dtype == np.float32 and y.ndim == 1
    # mp3 frames add encoder delay / padding; the rest is exact
    assert abs(y.size - 24000) <= (2500 if ext == "mp3" else 2)
    assert abs(peak_hz(y, 16000) - 440) < 3
    middle = y[4000:20000]
    assert np.sqrt(np.mean(middle**2)) == pytest.approx(0.4 / np.sqrt(2), rel=0.05)  # (0.6 + 0.2) / 2


def test_cut_pad_and_upsample(clips):
    assert load_audio(clips["wav"], 16000, max_seconds=1.0).size == 16000
    y = load_audio(clips["short8k"], 16000)  # 0.5 s at 8 kHz -> 16 kHz
    assert y.size == 8000 and abs(peak_hz(y, 16000) - 300) < 3
    assert load_audio(clips["short8k"], 16000, max_seconds=1.0).size == 8000
    padded = load_audio(clips["short8k"], 16000, max_seconds=1.0, pad=True)
    assert padded.size == 16000 and not padded[8100:].any() and padded[:8000].any()


@pytest.mark.parametrize("case", ["empty", "garbage", "missing"])
def test_bad_audio_names_the_file(clips, tmp_path, case):
    path = clips.get(case, tmp_path / "nope.wav")
    with pytest.raises(BadSampleError) as err:
        load_audio(path, 16000)
    assert str(path) in str(err.value)


# --------------------------------------------------------------------------- librosa descriptors
def test_librosa_descriptors(clips):
    enc = build_encoder({"backend": "librosa"})
    assert enc.dim == 338 and enc.modality == "audio"
    names = ["wav", "flac", "high", "low", "silence", "tiny"]
    X = enc.encode([clips[n] for n in names], progress=False)
    assert X.shape == (6, 338) and X.dtype == np.float32 and np.isfinite(X).all()
    assert np.abs(X[0] - X[1]).max() < 0.05 * np.abs(X[0]).max()  # WAV and FLAC of the same signal
    pitch_mean = enc.n_rows - 1  # the pitch row closes the "mean" block
    assert 2 ** X[2, pitch_mean] == pytest.approx(330, rel=0.05)
    assert 2 ** X[3, pitch_mean] == pytest.approx(110, rel=0.05)
    assert X[4, -2] == 0.0 and X[2, -2] > 0.9  # voiced fraction: silence none, a steady tone all
    assert X[2, -1] == pytest.approx(2.0, abs=0.01)  # duration
    small = build_encoder({"backend": "librosa", "n_mfcc": 13, "stats": ["mean"]})
    assert small.dim == 3 * 13 + 12 + 7 + 5 + 2
    assert small.encode([clips["wav"]], progress=False).shape == (1, small.dim)
    assert small.fingerprint_id() != enc.fingerprint_id()
    with pytest.raises(ConfigError):
        build_encoder({"backend": "librosa", "stats": ["median"]})
    with pytest.raises(ConfigError):
        build_encoder({"backend": "librosa", "sample_rate": 8000})  # contrast bands beyond Nyquist
    with pytest.raises(BadSampleError, match="garbage.wav"):
        enc.encode([clips["wav"], clips["garbage"]], progress=False)


# --------------------------------------------------------------------------- hf_audio with tiny models
@pytest.fixture(scope="module")
def audio_models(tmp_path_factory) -> dict[str, Path]:
    from transformers import (Wav2Vec2Config, Wav2Vec2FeatureExtractor, Wav2Vec2Model, WhisperConfig,
                              WhisperFeatureExtractor, WhisperModel)

    root = tmp_path_factory.mktemp("audio_models")
    torch.manual_seed(0)
    w2v = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
               conv_dim=(16, 16, 16), conv_stride=(5, 4, 4), conv_kernel=(10, 4, 4), num_conv_pos_embeddings=16,
               num_conv_pos_embedding_groups=2, vocab_size=8)
    out = {"w2v": root / "w2v", "w2v_group": root / "w2v_group", "whisper": root / "whisper"}
    Wav2Vec2Model(Wav2Vec2Config(**w2v, feat_extract_norm="layer", do_stable_layer_norm=True)
                  ).save_pretrained(out["w2v"])
    Wav2Vec2FeatureExtractor(sampling_rate=16000, return_attention_mask=True).save_pretrained(out["w2v"])
    Wav2Vec2Model(Wav2Vec2Config(**w2v, feat_extract_norm="group")).save_pretrained(out["w2v_group"])
    Wav2Vec2FeatureExtractor(sampling_rate=16000, return_attention_mask=False).save_pretrained(out["w2v_group"])
    WhisperModel(WhisperConfig(d_model=32, encoder_layers=2, decoder_layers=1, encoder_attention_heads=2,
                               decoder_attention_heads=2, encoder_ffn_dim=64, decoder_ffn_dim=64, num_mel_bins=16,
                               max_source_positions=100, max_target_positions=16, vocab_size=64, pad_token_id=0,
                               bos_token_id=1, eos_token_id=2, decoder_start_token_id=1)
                 ).save_pretrained(out["whisper"])
    # a 2 s window: 200 mel frames -> 100 encoder positions
    WhisperFeatureExtractor(feature_size=16, chunk_length=2, sampling_rate=16000, hop_length=160
                            ).save_pretrained(out["whisper"])
    return out


@pytest.mark.parametrize("name", ["w2v", "w2v_group", "whisper"])
def test_hf_audio_tiny_models(audio_models, clips, name):
    enc = build_encoder({"backend": "hf_audio", "model": str(audio_models[name]), "batch_size": 2})
    assert enc.dim == 32 and enc.modality == "audio" and enc.sr == 16000
    files = [clips["wav"], clips["short8k"], clips["flac"], clips["high"]]
    X = enc.encode(files, progress=False)
    assert X.shape == (4, 32) and X.dtype == np.float32 and np.isfinite(X).all()
    # pooling covers only the frames of the real audio: a short clip alone == the same clip batched with longer ones
    one = build_encoder({"backend": "hf_audio", "model": str(audio_models[name]), "batch_size": 1})
    np.testing.assert_allclose(one.encode([clips["short8k"]], progress=False)[0], X[1], atol=2e-4)
    fp = enc.fingerprint()
    assert fp["weights"].startswith("sha256:") and fp["preprocessing"]["sample_rate"] == 16000
    assert fp["model_type"] == ("whisper" if name == "whisper" else "wav2vec2")
    layer0 = build_encoder({"backend": "hf_audio", "model": str(audio_models[name]), "layer": 1, "pooling": "max"})
    assert layer0.fingerprint_id() != enc.fingerprint_id()
    assert layer0.encode([clips["wav"]], progress=False).shape == (1, 32)
    with pytest.raises(BadSampleError, match="garbage.wav"):
        enc.encode([clips["garbage"]], progress=False)


def test_hf_audio_config_errors(audio_models):
    with pytest.raises(ConfigError, match="at most 2 s"):
        build_encoder({"backend": "hf_audio", "model": str(audio_models["whisper"]), "max_seconds": 5})
    with pytest.raises(ConfigError, match="unknown key"):
        build_encoder({"backend": "hf_audio", "model": str(audio_models["w2v"]), "sampling": 8000})
    with pytest.raises(ConfigError, match="layer"):
        build_encoder({"backend": "hf_audio", "model": str(audio_models["w2v"]), "layer": 7})


# --------------------------------------------------------------------------- video
FPS_SRC = 10


@pytest.fixture(scope="module")
def videos(tmp_path_factory) -> dict[str, Path]:
    """MP4s written with OpenCV: frame i has brightness 8 * i (so a sampled frame tells its index)."""
    d = tmp_path_factory.mktemp("video")
    out = {}
    for name, n in (("long", 30), ("short", 7), ("one", 1)):
        frames = np.stack([np.full((48, 64, 3), 8 * i, np.uint8) for i in range(n)])
        frames[:, 10:20, 10:30, 0] = 255  # some colour, so RGB order is checked
        out[name] = d / f"{name}.mp4"
        write_mp4(out[name], frames, fps=FPS_SRC)
    out["broken"] = d / "broken.mp4"
    out["broken"].write_bytes(b"\x00\x00\x00\x18ftypmp42" + b"\x00" * 100)
    return out


def frame_index(frame: np.ndarray) -> int:
    return int(round(float(np.median(frame[30:, 40:, 1])) / 8))


def test_frames_sampled_at_fps(videos):
    got = list(iter_frames(videos["long"], fps=2, max_frames=100))  # 3 s at 10 fps -> every 5th frame
    assert [round(t, 2) for t, _ in got] == [0.0, 0.5, 1.0, 1.5, 2.0, 2.5]
    assert [frame_index(f) for _, f in got] == [0, 5, 10, 15, 20, 25]
    frame = got[0][1]
    assert frame.shape == (48, 64, 3) and frame.dtype == np.uint8
    assert frame[15, 20, 0] > 200 and frame[15, 20, 2] < 60  # red stays red: BGR was turned into RGB
    assert len(list(iter_frames(videos["long"], fps=None, max_frames=None))) == 30
    assert [frame_index(f) for _, f in iter_frames(videos["long"], fps=3, max_frames=4)] == [0, 4, 7, 10]
    assert len(list(iter_frames(videos["one"], fps=2))) == 1


def test_frames_stream_and_stop_early(videos, monkeypatch):
    grabs = []
    real = cv2.VideoCapture

    class Counting:
        def __init__(self, *a):
            self.cap = real(*a)

        def grab(self):
            grabs.append(1)
            return self.cap.grab()

        def __getattr__(self, name):
            return getattr(self.cap, name)

    monkeypatch.setattr(cv2, "VideoCapture", Counting)
    gen = iter_frames(videos["long"], fps=2, max_frames=2)
    assert next(gen)[0] == 0.0 and len(grabs) == 1  # a generator: nothing read ahead
    assert len(list(gen)) == 1 and len(grabs) == 6  # stops after the 2nd sampled frame (index 5)


@pytest.mark.parametrize("case", ["broken", "missing"])
def test_bad_video_names_the_file(videos, tmp_path, case):
    path = videos.get(case, tmp_path / "nope.mp4")
    with pytest.raises(BadSampleError) as err:
        list(iter_frames(path))
    assert str(path) in str(err.value)


@pytest.fixture(scope="module")
def image_model(tmp_path_factory) -> Path:
    return tiny_image_model(tmp_path_factory.mktemp("img") / "resnet")


def test_video_encoder_pooling_and_batching(videos, image_model):
    spec = {"backend": "video", "fps": 2, "max_frames": 4, "image_encoder": {"backend": "hf_image",
                                                                              "model": str(image_model)}}
    clips = [videos["long"], videos["short"], videos["one"]]
    mean = build_encoder({**spec, "batch_size": 3})
    seen: list[int] = []
    inner = mean.image.encode
    mean.image.encode = lambda items, progress=True: (seen.append(len(items)), inner(items, progress))[1]
    Xm = mean.encode(clips, progress=False)
    assert mean.frames_seen == 4 + 2 + 1 and max(seen) <= 3  # frames of several clips share bounded batches
    image = mean.image
    frames = [[f for _, f in iter_frames(c, 2, 4)] for c in clips]
    per_frame = [inner([load_rgb(Image.fromarray(f)) for f in fs], False) for fs in frames]
    np.testing.assert_allclose(Xm, np.stack([v.mean(0) for v in per_frame]), atol=1e-5)
    Xx = build_encoder({**spec, "pooling": "max", "batch_size": 32}).encode(clips, progress=False)
    np.testing.assert_allclose(Xx, np.stack([v.max(0) for v in per_frame]), atol=1e-5)
    both = build_encoder({**spec, "pooling": "meanmax"})
    assert both.dim == 2 * image.dim
    np.testing.assert_allclose(both.encode(clips, progress=False), np.hstack([Xm, Xx]), atol=1e-5)
    fp = both.fingerprint()
    assert fp["frames"]["fps"] == 2.0 and fp["image_encoder"]["backend"] == "hf_image"
    assert build_encoder({**spec, "fps": 1}).fingerprint_id() != mean.fingerprint_id()
    with pytest.raises(BadSampleError, match="broken.mp4"):
        mean.encode([videos["short"], videos["broken"]], progress=False)
    with pytest.raises(ConfigError):
        build_encoder({**spec, "pooling": "median"})
    with pytest.raises(ConfigError, match="not images"):
        build_encoder({**spec, "image_encoder": {"backend": "librosa"}})


# --------------------------------------------------------------------------- demo media
def test_demo_media_deterministic_and_label_carrying(tmp_path):
    s = demo_sample(0, 7)
    assert demo_audio_bytes(0, 7, s.label, s.text, "synthetic") == demo_audio_bytes(0, 7, s.label, s.text,
                                                                                      "synthetic")
    assert demo_video_bytes(0, 7, s.label) == demo_video_bytes(0, 7, s.label)
    (tmp_path / "a.wav").write_bytes(demo_audio_bytes(0, 7, s.label, s.text, "synthetic"))
    y, sr = sf.read(tmp_path / "a.wav")
    assert sr == 16000 and y.ndim == 1 and 0.5 < y.size / sr < 8
    # the synthetic speech's pitch follows its style: positive clips are higher than negative ones
    enc = build_encoder({"backend": "librosa"})
    pitch = {}
    for label in ("positive", "negative"):
        paths = []
        for g in range(40, 52):
            p = tmp_path / f"{label}{g}.wav"
            p.write_bytes(demo_audio_bytes(0, g, label, "what a day at the market", "synthetic"))
            paths.append(p)
        pitch[label] = np.median(enc.encode(paths, progress=False)[:, enc.n_rows - 1])
    assert 2 ** pitch["positive"] > 1.5 * 2 ** pitch["negative"]
    frames = demo_video_frames(0, 7, s.label)
    assert frames.shape[1:] == (64, 64, 3) and 10 <= frames.shape[0] < 20


def test_make_demo_with_media(tmp_path):
    root = make_demo(tmp_path / "d", n=6, seed=1, audio=True, video=True)
    names = {p.name for p in (root / "data").iterdir()}
    assert {f"{g}.{e}" for g in range(1, 10) for e in ("txt", "jpg", "wav", "mp4")} == names
    before = {p.name: p.read_bytes() for p in (root / "data").iterdir()}
    make_demo(tmp_path / "d", n=6, seed=1, audio=True, video=True)
    assert {p.name: p.read_bytes() for p in (root / "data").iterdir()} == before
    make_demo(tmp_path / "d", n=6, seed=1)  # media off: their files go
    assert {p.suffix for p in (root / "data").iterdir()} == {".txt", ".jpg"}


# --------------------------------------------------------------------------- end to end: demo with audio + video
@pytest.mark.slow
def test_demo_audio_video_features_end_to_end(tmp_path, image_model):
    import polars as pl

    from mmpipe.core.shards import read_shards
    from workflow import count, planned_jobs, snakemake, write_config

    config = {
        "data": "demo", "layout": "lab", "labels": {"classes": ["negative", "neutral", "positive"]},
        "demo": {"n": 12, "seed": 2, "audio": True, "video": True}, "shards": 1,
        "encoders": {
            "audio": {"backend": "librosa", "max_seconds": 4},
            "video": {"backend": "video", "fps": 4, "max_frames": 6, "pooling": "meanmax",
                      "image_encoder": {"backend": "hf_image", "model": str(image_model)}},
        },
        "heads": {"logreg": {}},
    }
    write_config(tmp_path, config)
    start = time.perf_counter()
    jobs = planned_jobs(snakemake(tmp_path, "features"))
    assert count(jobs, "demo_data") == 1 and count(jobs, "extract") == 2
    m = pl.read_parquet(tmp_path / "results/demo/manifest.parquet")
    assert m.height == 12 and m["audio_path"].null_count() == 0 and m["video_path"].null_count() == 0
    dims = {}
    for enc in ("audio", "video"):
        guids, X, meta = read_shards(sorted((tmp_path / "results/demo/features" / enc).glob("*.parquet")))
        assert sorted(guids) == sorted(m["guid"]) and np.isfinite(X).all()
        dims[enc] = (X.shape[1], meta["modality"])
    assert dims == {"audio": (338, "audio"), "video": (32, "video")}
    assert time.perf_counter() - start < 120
