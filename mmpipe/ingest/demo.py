"""A deterministic demo data set in the "lab" layout (``data/<guid>.txt|.jpg``, ``train.txt``,
``test_without_label.txt``), with the quirks of the real data: mixed text encodings, tweet noise,
mixed image modes and formats behind a ``.jpg`` name, and files that no list names.

**The two modalities are complementary, as in real multimodal data.** Each sample draws an *evidence*
kind (``demo_evidence``): its label shows in the text and the image (``both``), in the text only
(``text``), in the image only (``image``), or in neither (``none``, noise). Where the text carries the
label it holds one of the label's sentiment words (and emoji of that label in half of the UTF-8 tweets);
where it does not, the same templates hold a word without sentiment ("new", "red", "local") and emoji,
Chinese phrases and hashtags that say nothing. Where the image carries the label its background takes the
label's hue and brightness (orange and bright: positive, green and mid: neutral, blue and dark: negative);
where it does not it is grey (unsaturated) with a random brightness (the shapes on it are shades of the
background, so they add no hue). So neither modality alone can recover more than the samples its own cue
covers (half of them each with ``EVIDENCE_WEIGHTS``; a guess for the rest), while text + image together cover
95 %: at the default size (``DEFAULT_N``) every head does better on text + image than on either modality.
``demo_cues(seed, guid)`` gives the (text cue, image cue) latent of a sample (a label or None) without
writing anything.

Everything about one sample (label, evidence, text, encoding, image, and which list names it) is a pure
function of ``(seed, guid)`` (and ``n_unlisted``), so ``make_demo(n=303)`` is ``make_demo(n=300)`` plus three
new samples: old files are byte-identical, old list rows keep their order and new rows are appended.

With ``audio=True`` / ``video=True`` each sample also gets ``data/<guid>.wav`` (16 kHz mono PCM: its text
spoken by ``espeak-ng`` where that is installed, else a synthetic syllable signal; pitch, tempo and loudness
follow the label) and ``data/<guid>.mp4`` (1-2 s at 10 fps, 64x64, written with OpenCV: the background colour
and the direction and speed of a moving disc follow the label). One clip in five takes another class's style.
These are also pure functions of ``(seed, guid)``, given the same espeak-ng and OpenCV builds (a machine
without espeak-ng writes the synthetic signal instead).

Run ``python -m mmpipe.ingest.demo OUT_DIR --n 480 --seed 0 [--audio] [--video]``.
"""

from __future__ import annotations

import argparse
import colorsys
import io
import random
import re
import shutil
import string
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from mmpipe.core.atomic import write_bytes_if_changed

DEFAULT_N = 480  # listed samples: ~384 train, ~58 of them validation (>= 10 per class), ~96 test
LABELS = ("positive", "neutral", "negative")
LABEL_WEIGHTS = (0.4, 0.25, 0.35)
# Where a sample's label shows: in both modalities, the text only, the image only, or neither (noise).
EVIDENCE = ("both", "text", "image", "none")
EVIDENCE_WEIGHTS = (0.05, 0.45, 0.45, 0.05)
ENCODINGS = ("utf-8", "utf-8-sig", "gb18030", "cp1252", "latin-1")
ENCODING_WEIGHTS = (0.4, 0.1, 0.2, 0.15, 0.15)
IMAGE_KINDS = ("RGB-JPEG", "L-JPEG", "CMYK-JPEG", "RGBA-PNG", "RGB-PNG")  # the PNGs are named .jpg too
IMAGE_KIND_WEIGHTS = (0.45, 0.15, 0.15, 0.1, 0.15)
TEST_EVERY = 5  # one listed guid in each block of five goes to the test list (about 80 % train)

_WORDS = {
    "positive": ("amazing", "great", "wonderful", "beautiful", "lovely", "fantastic", "happy", "awesome",
                 "brilliant", "perfect"),
    "neutral": ("okay", "ordinary", "average", "normal", "typical", "standard", "scheduled", "usual",
                "plain", "routine"),
    "negative": ("terrible", "awful", "horrible", "sad", "disappointing", "ugly", "broken", "miserable",
                 "boring", "dreadful"),
}
# Words, emoji and Chinese phrases without sentiment: what a text that does not carry its label holds.
_FILLER = ("new", "big", "small", "red", "local", "second", "late", "early", "blue", "tall", "round", "wooden")
_SUBJECTS = ("The concert", "My morning", "This game", "The weather", "Our trip", "The meeting", "Lunch",
             "The match", "My commute", "The new album", "The show", "Dinner")
_OBJECTS = ("movie", "phone", "coffee", "view", "team", "city", "park", "book", "song", "beach", "train", "cat")
_PLACES = ("station", "office", "market", "stadium", "museum", "airport", "mall", "harbour")
_TEMPLATES = (
    "{subj} was {w} today",
    "Feeling {w} about the {obj}",
    "What a {w} {obj}!",
    "The {obj} at the {place} is {w}",
    "Just saw the {obj}, {w}",
    "{w} {obj} at the {place} #{obj}",
    "Another {w} day with this {obj}",
)
_EMOJI = {"positive": ("😀", "😍", "🎉", "👍", "❤️"), "neutral": ("🤔", "😐", "😶", "🙂"),
          "negative": ("😢", "😡", "👎", "💔", "😞"), None: ("📷", "🚆", "📅", "🏙️", "🎧")}
# (很难过 is not among them: its GB18030 bytes read as plausible Korean too, an ambiguity the decoder flags lossy)
_CJK = {"positive": ("很开心", "太好了"), "neutral": ("一般般", "还行"), "negative": ("好伤心", "太糟糕"),
        None: ("今天", "周末", "下午")}
_LATIN1_WORDS = ("café", "über", "señor", "jalapeño", "Zürich", "façade", "naïve", "Müller", "piñata",
                 "crème brûlée", "déjà vu", "España")
_HUES = {"positive": 0.09, "neutral": 0.33, "negative": 0.62}  # orange, green, blue
_BRIGHTNESS = {"positive": 0.85, "neutral": 0.6, "negative": 0.35}


@dataclass(frozen=True)
class DemoSample:
    """One demo sample: what make_demo writes for a guid (the image is made on demand)."""

    seed: int
    guid: int
    label: str
    text: str  # the intended text (what a correct decoder returns)
    encoding: str  # the codec the .txt file is written in
    image_kind: str  # one of IMAGE_KINDS
    evidence: str = "both"  # one of EVIDENCE: which modalities show the label

    @property
    def text_cue(self) -> str | None:
        """The label the text shows, or None (a text without sentiment)."""
        return self.label if self.evidence in ("both", "text") else None

    @property
    def image_cue(self) -> str | None:
        """The label the image shows, or None (a grey image)."""
        return self.label if self.evidence in ("both", "image") else None

    @property
    def text_bytes(self) -> bytes:
        return self.text.encode(self.encoding)

    def image_bytes(self) -> bytes:
        return _image_bytes(self.seed, self.guid, self.image_cue, self.image_kind)

    def audio_bytes(self, engine: str = "auto") -> bytes:
        """The sample's WAV file (see ``demo_audio_bytes``)."""
        return demo_audio_bytes(self.seed, self.guid, self.label, self.text, engine)

    def video_bytes(self) -> bytes:
        """The sample's MP4 file (see ``demo_video_bytes``)."""
        return demo_video_bytes(self.seed, self.guid, self.label)


def _rng(seed: int, guid: int, what: str) -> random.Random:
    """An independent, platform-stable stream per (seed, guid, aspect)."""
    return random.Random(f"mmpipe.ingest.demo:{seed}:{guid}:{what}")


def _choose(rng: random.Random, items: tuple, weights: tuple[float, ...]):
    return rng.choices(items, weights=weights, k=1)[0]


def label_of_demo(seed: int, guid: int) -> str:
    """The label of demo sample ``guid``."""
    return _choose(_rng(seed, guid, "label"), LABELS, LABEL_WEIGHTS)


def demo_evidence(seed: int, guid: int) -> str:
    """Which modalities of demo sample ``guid`` show its label: one of EVIDENCE."""
    return _choose(_rng(seed, guid, "evidence"), EVIDENCE, EVIDENCE_WEIGHTS)


def demo_cues(seed: int, guid: int) -> tuple[str | None, str | None]:
    """The generator's latent (text cue, image cue) of sample ``guid``: the label each modality shows, or None."""
    label, ev = label_of_demo(seed, guid), demo_evidence(seed, guid)
    return (label if ev in ("both", "text") else None, label if ev in ("both", "image") else None)


def encoding_of_demo_text(seed: int, guid: int) -> str:
    """The codec demo text file ``guid`` is written in (one of ENCODINGS)."""
    return _choose(_rng(seed, guid, "encoding"), ENCODINGS, ENCODING_WEIGHTS)


def _base_text(rng: random.Random, cue: str | None) -> tuple[str, str]:
    word = rng.choice(_WORDS[cue] if cue is not None else _FILLER)
    text = rng.choice(_TEMPLATES).format(subj=rng.choice(_SUBJECTS), obj=rng.choice(_OBJECTS),
                                         place=rng.choice(_PLACES), w=word)
    return text, word  # capitalised by the caller, after the word may have been quoted


def _handle(rng: random.Random) -> str:
    return "@" + "".join(rng.choices(string.ascii_lowercase, k=rng.randint(4, 8))) + rng.choice(("", "_", "_tv"))


def demo_text(seed: int, guid: int) -> str:
    """The intended (decoded) text of demo sample ``guid``, trailing newline included."""
    cue, enc = demo_cues(seed, guid)[0], encoding_of_demo_text(seed, guid)
    rng = _rng(seed, guid, "text")
    text, word = _base_text(rng, cue)
    if enc in ("utf-8", "utf-8-sig"):
        if rng.random() < 0.5:
            text += " " + "".join(rng.choices(_EMOJI[cue], k=rng.randint(1, 3)))
        if rng.random() < 0.2:
            text += " at the " + rng.choice(("café", "Zürich market", "crème brûlée stand"))
        if rng.random() < 0.2:
            text = text.replace(word, f"“{word}”", 1)
    elif enc == "gb18030":
        # GBK quote and ellipsis marks (never valid UTF-8), sometimes a short Chinese phrase.
        marks = rng.choice(("quote", "ellipsis", "both"))
        if marks in ("quote", "both"):
            text = text.replace(word, f"“{word}”", 1)
        if rng.random() < 0.5:
            text += " " + rng.choice(_CJK[cue])
        if marks in ("ellipsis", "both"):
            text += "…"
    elif enc == "cp1252":
        # cp1252-only characters (bytes 0x80-0x9F) and Western accented letters.
        extras = rng.sample(("quote", "apostrophe", "euro", "ellipsis", "accent"), k=rng.randint(1, 3))
        if "accent" in extras:
            text += " at the " + rng.choice(("café", "crème brûlée stand", "naïve artist’s stall"))
        if "apostrophe" in extras or extras == ["accent"]:
            text += rng.choice((" – it’s true", " – don’t ask", " – I’m in"))
        if "quote" in extras:
            text = text.replace(word, f"“{word}”", 1)
        if "euro" in extras:
            text += f" only €{rng.randint(2, 99)}"
        if "ellipsis" in extras:
            text += "…"
    else:  # latin-1: accented letters only, nothing outside Latin-1 and no C1 bytes
        words = rng.sample(_LATIN1_WORDS, k=rng.randint(1, 2))
        text += " with " + " and ".join(words)
    if rng.random() < 0.2:
        text += " with " + _handle(rng)
    if rng.random() < 0.3:
        text += " #" + rng.choice(_OBJECTS) + rng.choice(("", "life", "time", "2015"))
    if rng.random() < 0.35:
        text += " http://t.co/" + "".join(rng.choices(string.ascii_letters + string.digits, k=10))
    i = 1 if text.startswith("“") else 0
    text = text[:i] + text[i].upper() + text[i + 1:]
    if rng.random() < 0.15:
        text = f"RT {_handle(rng)}: {text}"
    return text + "\n"


def demo_sample(seed: int, guid: int) -> DemoSample:
    """Everything about demo sample ``guid`` except the image pixels."""
    return DemoSample(seed=seed, guid=guid, label=label_of_demo(seed, guid), text=demo_text(seed, guid),
                      encoding=encoding_of_demo_text(seed, guid),
                      image_kind=_choose(_rng(seed, guid, "image-kind"), IMAGE_KINDS, IMAGE_KIND_WEIGHTS),
                      evidence=demo_evidence(seed, guid))


def _image_bytes(seed: int, guid: int, cue: str | None, kind: str) -> bytes:
    """The image file of a sample whose image shows label ``cue`` (None: a grey image that shows nothing)."""
    rng = _rng(seed, guid, "image")
    nrng = np.random.default_rng([seed, guid, 7])
    small = kind.endswith("PNG")  # PNG noise compresses badly: keep those small
    side = rng.randint(48, 96 if small else 160)  # small: decoding and writing stay fast (encoders resize anyway)
    aspect = rng.choice((1.0, 4 / 3, 3 / 4, 16 / 9, 9 / 16, 2.0, 0.5))
    w, h = (side, max(32, round(side / aspect))) if aspect >= 1 else (max(32, round(side * aspect)), side)
    if cue is not None:  # the label shows as the background's hue and brightness
        hue = (_HUES[cue] + rng.uniform(-0.05, 0.05)) % 1.0
        val = min(1.0, max(0.1, _BRIGHTNESS[cue] + rng.uniform(-0.1, 0.1)))
        sat = rng.uniform(0.5, 0.85)
    else:  # grey, any brightness: nothing about the label
        hue, val, sat = rng.random(), rng.uniform(0.3, 0.9), rng.uniform(0.0, 0.06)
    base = np.array(colorsys.hsv_to_rgb(hue, sat, val)) * 255
    # Low-frequency noise (compresses well), then shapes in lighter or darker shades of the background (so they
    # add structure, not another hue), then fine noise. The noise of a grey image is grey too: it shows no hue.
    channels = 3 if cue is not None else 1
    coarse = nrng.normal(0, 12, size=(4, 4, channels))
    coarse_img = Image.fromarray(np.clip(base + coarse, 0, 255).astype(np.uint8), "RGB").resize((w, h), Image.BILINEAR)
    draw = ImageDraw.Draw(coarse_img)
    for _ in range(rng.randint(1, 4)):
        x0, y0 = rng.randrange(w), rng.randrange(h)
        x1, y1 = x0 + rng.randint(6, max(7, w // 2)), y0 + rng.randint(6, max(7, h // 2))
        shade = np.array(colorsys.hsv_to_rgb(hue, sat, min(1.0, val * rng.uniform(0.55, 1.4)))) * 255
        colour = tuple(int(c) for c in shade)
        (draw.ellipse if rng.random() < 0.5 else draw.rectangle)((x0, y0, x1, y1), fill=colour)
    arr = np.asarray(coarse_img, dtype=np.float32)
    arr = np.clip(arr + nrng.normal(0, 4 if small else 8, size=(h, w, channels)), 0, 255).astype(np.uint8)
    img = Image.fromarray(arr, "RGB")
    buf = io.BytesIO()
    if kind == "RGB-JPEG":
        img.save(buf, "JPEG", quality=70)
    elif kind == "L-JPEG":
        target = _BRIGHTNESS[cue] if cue is not None else val
        lum = np.clip(target * 255 + (np.asarray(img.convert("L"), np.float32) - val * 255) * 0.5, 0, 255)
        Image.fromarray(lum.astype(np.uint8), "L").save(buf, "JPEG", quality=70)
    elif kind == "CMYK-JPEG":
        img.convert("CMYK").save(buf, "JPEG", quality=70)
    elif kind == "RGBA-PNG":
        alpha = np.full((h, w, 1), 255, np.uint8)
        alpha[: h // 4] = 160  # a translucent band
        Image.fromarray(np.concatenate([arr, alpha], axis=2), "RGBA").save(buf, "PNG", optimize=True)
    else:
        img.save(buf, "PNG", optimize=True)
    return buf.getvalue()


# ---------------------------------------------------------------------------------------------- audio and video
AUDIO_RATE = 16000
VIDEO_FPS, VIDEO_SIDE = 10, 64
# Prosody per label: espeak-ng pitch (0-99), speed (words/min) and amplitude; the synthetic signal's base f0 (Hz),
# its slope over the utterance (fraction of f0) and its loudness.
_PROSODY = {
    "positive": dict(pitch=80, speed=185, amp=150, f0=230.0, slope=0.3, loud=0.55),
    "neutral": dict(pitch=45, speed=155, amp=110, f0=160.0, slope=0.0, loud=0.32),
    "negative": dict(pitch=15, speed=120, amp=70, f0=110.0, slope=-0.3, loud=0.16),
}
_MOTION = {"positive": (0.0, -1.0, 4.0), "neutral": (1.0, 0.0, 2.0), "negative": (0.0, 1.0, 1.0)}  # dx, dy, px/frame
_STYLE_NOISE = 0.2  # share of clips that take another class's style


def _style(seed: int, guid: int, label: str, what: str) -> str:
    rng = _rng(seed, guid, what + "-style")
    return label if rng.random() >= _STYLE_NOISE else rng.choice([lab for lab in LABELS if lab != label])


def speakable(text: str) -> str:
    """The words of a demo text that a speech synthesiser should read (no URLs, handles, emoji or CJK)."""
    text = re.sub(r"https?://\S+|@\w+|\bRT\b", " ", text).replace("\u2019", "'")
    text = "".join(ch if ch.isascii() and (ch.isalnum() or ch in " ,.!?'") else " " for ch in text.replace("#", " "))
    text = re.sub(r"\s+", " ", text).strip()
    return text or "okay"


def _wav_bytes(y: np.ndarray, sr: int) -> bytes:
    import soundfile as sf

    buf = io.BytesIO()
    sf.write(buf, np.clip(y, -1.0, 1.0).astype(np.float32), sr, format="WAV", subtype="PCM_16")
    return buf.getvalue()


def _espeak(text: str, style: str, rng: random.Random) -> np.ndarray:
    import librosa
    import soundfile as sf

    p = _PROSODY[style]
    args = ["espeak-ng", "-v", "en-us", "-p", str(min(99, max(0, p["pitch"] + rng.randint(-8, 8)))),
            "-s", str(p["speed"] + rng.randint(-15, 15)), "-a", str(p["amp"]), "--stdin"]
    with tempfile.TemporaryDirectory(prefix="mmpipe-demo-") as tmp:
        wav = Path(tmp) / "speech.wav"
        subprocess.run([*args, "-w", str(wav)], input=text.encode(), check=True, capture_output=True, timeout=60)
        y, sr = sf.read(wav, dtype="float32", always_2d=True)
    y = y.mean(axis=1)
    return librosa.resample(y, orig_sr=sr, target_sr=AUDIO_RATE, res_type="soxr_hq") if sr != AUDIO_RATE else y


def _synthetic_speech(text: str, style: str, nrng: np.random.Generator) -> np.ndarray:
    """One harmonic "syllable" per word; pitch, slope, tempo and loudness follow ``style``."""
    p = _PROSODY[style]
    words = text.split()[:16]
    seconds_per_word = 60.0 / p["speed"] * nrng.uniform(0.85, 1.15)
    f0 = p["f0"] * nrng.uniform(0.9, 1.1)
    parts = [np.zeros(int(0.1 * AUDIO_RATE), np.float32)]
    for i, word in enumerate(words):
        dur = seconds_per_word * min(1.6, 0.6 + 0.12 * len(word))
        t = np.arange(int(dur * AUDIO_RATE)) / AUDIO_RATE
        progress = (i + t / max(dur, 1e-3)) / max(1, len(words))
        freq = f0 * (1.0 + p["slope"] * (progress - 0.5)) * (1.0 + 0.02 * nrng.standard_normal())
        phase = 2 * np.pi * np.cumsum(freq) / AUDIO_RATE
        tone = sum(np.sin(k * phase) / k for k in range(1, 7))
        env = np.sin(np.pi * t / max(dur, 1e-3)) ** 2
        parts.append((p["loud"] * env * tone / 2.5).astype(np.float32))
        parts.append(np.zeros(int(nrng.uniform(0.03, 0.09) * AUDIO_RATE), np.float32))
    y = np.concatenate(parts)
    return y + nrng.normal(0.0, 0.004, y.size).astype(np.float32)


def audio_engine() -> str:
    """``espeak`` when ``espeak-ng`` is on the PATH, else ``synthetic``."""
    return "espeak" if shutil.which("espeak-ng") else "synthetic"


def demo_audio_bytes(seed: int, guid: int, label: str, text: str, engine: str = "auto") -> bytes:
    """A 16 kHz mono 16-bit WAV of ``text`` in the prosody of ``label`` (one clip in five: another class's).

    ``engine``: ``espeak`` (espeak-ng speech), ``synthetic`` (harmonic syllables), or ``auto`` (espeak where
    installed).
    """
    engine = audio_engine() if engine == "auto" else engine
    style = _style(seed, guid, label, "audio")
    nrng = np.random.default_rng([seed, guid, 11])
    words = speakable(text)
    if engine == "espeak":
        y = _espeak(words, style, _rng(seed, guid, "espeak"))
        y = y + nrng.normal(0.0, 0.002, y.size).astype(np.float32)
    elif engine == "synthetic":
        y = _synthetic_speech(words, style, nrng)
    else:
        raise ValueError(f"audio engine must be auto, espeak or synthetic, got {engine!r}")
    return _wav_bytes(y[: 8 * AUDIO_RATE], AUDIO_RATE)


def demo_video_frames(seed: int, guid: int, label: str) -> np.ndarray:
    """The RGB frames ``(T, 64, 64, 3)`` of a demo clip: a tinted background and a disc moving by label."""
    style = _style(seed, guid, label, "video")
    rng = _rng(seed, guid, "video")
    nrng = np.random.default_rng([seed, guid, 13])
    n_frames = VIDEO_FPS + rng.randint(0, VIDEO_FPS)  # 1-2 s
    hue = (_HUES[style] + rng.uniform(-0.05, 0.05)) % 1.0
    val = min(1.0, max(0.15, _BRIGHTNESS[style] + rng.uniform(-0.1, 0.1)))
    bg = np.array(colorsys.hsv_to_rgb(hue, rng.uniform(0.4, 0.8), val)) * 255
    disc = np.array(colorsys.hsv_to_rgb((hue + 0.5) % 1.0, 0.9, 1.0 - 0.5 * val)) * 255
    dx, dy, speed = _MOTION[style]
    speed *= rng.uniform(0.7, 1.3)
    x, y = rng.uniform(16, 48), rng.uniform(16, 48)
    radius = rng.uniform(6, 12)
    yy, xx = np.mgrid[0:VIDEO_SIDE, 0:VIDEO_SIDE]
    frames = np.empty((n_frames, VIDEO_SIDE, VIDEO_SIDE, 3), np.uint8)
    for i in range(n_frames):
        cx, cy = (x + dx * speed * i) % VIDEO_SIDE, (y + dy * speed * i) % VIDEO_SIDE
        img = np.broadcast_to(bg, (VIDEO_SIDE, VIDEO_SIDE, 3)).copy()
        img[(xx - cx) ** 2 + (yy - cy) ** 2 <= radius**2] = disc
        img += nrng.normal(0, 6, img.shape)
        frames[i] = np.clip(img, 0, 255).astype(np.uint8)
    return frames


def write_mp4(path: str | Path, frames: np.ndarray, fps: float = VIDEO_FPS) -> None:
    """Write RGB ``frames`` ``(T, H, W, 3)`` as an MPEG-4 Part 2 MP4 with OpenCV."""
    import cv2

    t, h, w, _ = frames.shape
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), float(fps), (w, h))
    if not writer.isOpened():
        raise RuntimeError(f"OpenCV cannot write MP4 files here ({path})")
    try:
        for frame in frames:
            writer.write(np.ascontiguousarray(frame[:, :, ::-1]))  # OpenCV wants BGR
    finally:
        writer.release()


def demo_video_bytes(seed: int, guid: int, label: str) -> bytes:
    """The MP4 file of a demo clip (``demo_video_frames``, 10 fps)."""
    with tempfile.TemporaryDirectory(prefix="mmpipe-demo-") as tmp:
        path = Path(tmp) / "clip.mp4"
        write_mp4(path, demo_video_frames(seed, guid, label))
        return path.read_bytes()


def demo_split(seed: int, guid: int, n_unlisted: int = 3) -> str | None:
    """``"train"``, ``"test"`` or None (in data/ but in no list) for guid, with the default ``n_test``.

    Guids 1..n_unlisted are unlisted; of the listed guids, one per block of TEST_EVERY consecutive ones
    (chosen by the seed) goes to the test list.
    """
    if guid <= n_unlisted:
        return None
    k = guid - n_unlisted - 1
    pick = _rng(seed, k // TEST_EVERY, "test-block").randrange(TEST_EVERY)
    return "test" if k % TEST_EVERY == pick else "train"


def make_demo(out_dir: str | Path, n: int = DEFAULT_N, seed: int = 0, n_test: int | None = None,
              n_unlisted: int = 3, audio: bool = False, video: bool = False) -> Path:
    """Write ``n`` listed samples plus ``n_unlisted`` unlisted ones under ``out_dir``; return ``out_dir``.

    Guids are ``1..n + n_unlisted``; the first ``n_unlisted`` are the unlisted ones. About 80 % of the
    listed samples go to ``train.txt``, the rest to ``test_without_label.txt`` (tag ``null``). With
    ``n_test`` exactly that many (the ones with the smallest per-guid draw) go to test; that choice is
    not stable when ``n`` changes, the default one is. With ``audio`` / ``video`` every sample also gets
    ``data/<guid>.wav`` / ``data/<guid>.mp4``. Files already holding the right bytes are not rewritten;
    stale ``data/<int>.txt|.jpg|.wav|.mp4`` above the new largest guid (and WAV / MP4 files when ``audio`` /
    ``video`` is off) are removed.
    """
    if n < 1 or n_unlisted < 0:
        raise ValueError("need n >= 1 and n_unlisted >= 0")
    out = Path(out_dir)
    data = out / "data"
    data.mkdir(parents=True, exist_ok=True)
    last = n + n_unlisted
    listed = range(n_unlisted + 1, last + 1)
    if n_test is None:
        test = {g for g in listed if demo_split(seed, g, n_unlisted) == "test"}
    else:
        if not 0 <= n_test <= n:
            raise ValueError("need 0 <= n_test <= n")
        test = set(sorted(listed, key=lambda g: (_rng(seed, g, "n-test").random(), g))[:n_test])
    train_rows, test_rows = ["guid,tag"], ["guid,tag"]
    engine = audio_engine() if audio else None
    for guid in range(1, last + 1):
        s = demo_sample(seed, guid)
        write_bytes_if_changed(data / f"{guid}.txt", s.text_bytes)
        write_bytes_if_changed(data / f"{guid}.jpg", s.image_bytes())
        if audio:
            write_bytes_if_changed(data / f"{guid}.wav", s.audio_bytes(engine))
        if video:
            write_bytes_if_changed(data / f"{guid}.mp4", s.video_bytes())
        if guid > n_unlisted:
            (test_rows.append(f"{guid},null") if guid in test else train_rows.append(f"{guid},{s.label}"))
    for path in data.iterdir():
        m = re.fullmatch(r"(\d+)\.(txt|jpg|wav|mp4)", path.name)
        if m and (int(m.group(1)) > last or (m.group(2) == "wav" and not audio)
                  or (m.group(2) == "mp4" and not video)):
            path.unlink()
    write_bytes_if_changed(out / "train.txt", ("\n".join(train_rows) + "\n").encode())
    write_bytes_if_changed(out / "test_without_label.txt", ("\n".join(test_rows) + "\n").encode())
    return out


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m mmpipe.ingest.demo", description="Write the demo data set.")
    ap.add_argument("out_dir", type=Path)
    ap.add_argument("--n", type=int, default=DEFAULT_N, help=f"listed samples (default {DEFAULT_N})")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--n-test", type=int, default=None, help="exact test-list size (default: about 20%%)")
    ap.add_argument("--n-unlisted", type=int, default=3, help="extra samples that no list names")
    ap.add_argument("--audio", action="store_true", help="also write data/<guid>.wav (speech)")
    ap.add_argument("--video", action="store_true", help="also write data/<guid>.mp4 (short clips)")
    args = ap.parse_args(argv)
    out = make_demo(args.out_dir, n=args.n, seed=args.seed, n_test=args.n_test, n_unlisted=args.n_unlisted,
                    audio=args.audio, video=args.video)
    print(out)


if __name__ == "__main__":
    main()
