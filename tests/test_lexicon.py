"""The ``vader`` backend (lexicon scores and tweet counts) and ``hf_text``'s ``tweet_normalize`` option."""

from __future__ import annotations

import os

import numpy as np
import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

pytest.importorskip("vaderSentiment")

from mmpipe.core.errors import ConfigError  # noqa: E402
from mmpipe.encoders.base import ENCODERS, build_encoder  # noqa: E402
from mmpipe.encoders.lexicon_vader import FEATURES  # noqa: E402
from mmpipe.encoders.tweet import normalize_tweet  # noqa: E402

POSITIVE = "I love this, what a wonderful happy day! :)"
NEGATIVE = "I hate this, what an awful terrible day :("
CRAFTED = "#blessed what a day :) 😀 #sunday!!!"


def vader(**kw):
    return build_encoder({"backend": "vader", **kw})


def features(vec: np.ndarray) -> dict[str, float]:
    return dict(zip(FEATURES, vec.tolist()))


# --------------------------------------------------------------------------- vader
def test_vader_width_dtype_finite():
    enc = vader()
    assert enc.dim == len(FEATURES) == 13 and enc.modality == "text"
    x = enc.encode([POSITIVE, NEGATIVE, CRAFTED, None, ""], progress=False)
    assert x.shape == (5, enc.dim) and x.dtype == np.float32 and np.isfinite(x).all()
    assert not x[3:].any()  # None and "" give VADER's zeros and zero counts
    assert enc.encode([], progress=False).shape == (0, enc.dim)


def test_vader_polarity_order():
    pos, neg = (features(v) for v in vader().encode([POSITIVE, NEGATIVE], progress=False))
    assert pos["compound"] > 0.5 > -0.5 > neg["compound"]
    assert pos["pos"] > pos["neg"] and neg["neg"] > neg["pos"]


def test_vader_counts_on_crafted_tweet():
    f = features(vader().encode([CRAFTED], progress=False)[0])
    counts = {k: round(float(np.expm1(f[k]))) for k in ("emoji", "emoticons", "hashtags", "mentions", "urls",
                                                          "exclamations", "questions", "caps_words")}
    assert counts == {"emoji": 1, "emoticons": 1, "hashtags": 2, "mentions": 0, "urls": 0, "exclamations": 3,
                      "questions": 0, "caps_words": 0}
    assert f["hashtags"] == pytest.approx(np.log1p(2)) and f["caps_fraction"] == 0.0


def test_vader_marker_details():
    text = "I LOVE it :D XD <3 @Bob http://x.co/#a 👍🏽 👨‍👩‍👧 🇫🇷🇩🇪 why??"
    f = features(vader().encode([text], progress=False)[0])
    got = {k: round(float(np.expm1(f[k]))) for k in ("emoji", "emoticons", "hashtags", "mentions", "urls",
                                                      "questions", "caps_words")}
    # skin tone, ZWJ family and a flag pair count once each; '#a' inside the link is no hashtag;
    # 'XD' is an emoticon, not a caps word; 'I' is too short
    assert got == {"emoji": 4, "emoticons": 3, "hashtags": 0, "mentions": 1, "urls": 1, "questions": 2,
                   "caps_words": 1}
    assert 0.0 < f["caps_fraction"] < 1.0


def test_vader_fingerprint_stable_and_explicit():
    a, b = vader(), vader(batch_size=3)
    assert a.fingerprint() == b.fingerprint() and a.fingerprint_id() == b.fingerprint_id()
    fp = a.fingerprint()
    assert fp["backend"] == "vader" and fp["features"] == list(FEATURES) and fp["dim"] == 13
    assert fp["vaderSentiment"] and "features_version" in fp


def test_vader_batching_invariance():
    texts = [POSITIVE, NEGATIVE, CRAFTED, "meh", None, "OK?!"] * 3
    np.testing.assert_array_equal(vader(batch_size=1).encode(texts, progress=False),
                                  vader(batch_size=64).encode(texts, progress=False))


def test_vader_config_check():
    cls = ENCODERS.get("vader")
    cls.check_spec({"backend": "vader", "batch_size": 8})
    with pytest.raises(ConfigError, match="unknown key"):
        cls.check_spec({"backend": "vader", "model": "x"})
    with pytest.raises(ConfigError, match="batch_size"):
        vader(batch_size=0)
    assert "threads" not in cls.KEYS  # extract_shard passes no threads to it


def test_planning_check_accepts_vader_and_tweet_normalize():
    import copy

    import yaml

    from conftest import REPO
    from mmpipe.checks import check_config

    cfg = copy.deepcopy(yaml.safe_load((REPO / "config.yaml").read_text()))
    cfg["encoders"]["text"]["tweet_normalize"] = True
    cfg["encoders"]["lexicon"] = {"backend": "vader"}
    check_config(cfg)
    cfg["encoders"]["lexicon"]["threads"] = 2
    with pytest.raises(ConfigError, match="encoders.lexicon: vader: unknown key"):
        check_config(cfg)


def test_vader_through_extract_shard(tmp_path):
    pl = pytest.importorskip("polars")
    from mmpipe.core.shards import read_shards
    from mmpipe.encoders.extract import extract_shard
    from mmpipe.ingest.manifest import SLICE_COLUMNS

    rows = {"guid": ["g1", "g2", "g3"], "text": [POSITIVE, None, NEGATIVE], "image_path": ["a.jpg", None, None],
            "audio_path": [None, None, None], "video_path": [None, None, None], "content_hash": ["h1", "h2", "h3"]}
    sl = tmp_path / "slice.parquet"
    pl.DataFrame(rows, schema={c: pl.String for c in SLICE_COLUMNS}).write_parquet(sl)
    out = tmp_path / "lexicon" / "shard0.parquet"
    spec = {"backend": "vader", "modality": "text"}
    assert extract_shard(sl, "lexicon", spec, out, data_root=tmp_path, threads=2, progress=False) == 2
    guids, x, meta = read_shards([out])
    assert guids == ["g1", "g3"] and x.shape == (2, 13) and x.dtype == np.float32
    assert meta["encoder"] == "lexicon" and meta["dim"] == 13 and meta["modality"] == "text"
    assert meta["fingerprint_id"] == vader().fingerprint_id()
    np.testing.assert_allclose(x, vader().encode([POSITIVE, NEGATIVE], progress=False))


# --------------------------------------------------------------------------- tweet normalisation
@pytest.mark.parametrize("raw, norm", [
    ("@alice look http://x.co/a", "@user look http"),
    ("hi @bob_99: see https://t.co/zz and www.example.com/x", "hi @user see http and http"),
    ("mail a@b.com, @ alone, x@y", "mail a@b.com, @ alone, x@y"),
    ("RT @Some_One  two  spaces\n@next line http", "RT @user  two  spaces\n@user line http"),
    ("no markers here", "no markers here"),
])
def test_normalize_tweet(raw, norm):
    assert normalize_tweet(raw) == norm


@pytest.fixture(scope="module")
def bert(tmp_path_factory):
    torch = pytest.importorskip("torch")
    pytest.importorskip("transformers")
    from tiny_models import tiny_text_model

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield tiny_text_model(tmp_path_factory.mktemp("bert"))
    torch.set_num_threads(before)


def test_hf_text_tweet_normalize(bert):
    spec = {"backend": "hf_text", "model": str(bert)}
    plain, tweet = build_encoder(spec), build_encoder({**spec, "tweet_normalize": True})
    texts = ["@alice look http://x.co/a", "@bob look https://t.co/zz", None]
    a = tweet.encode(texts, progress=False)
    np.testing.assert_allclose(a[0], a[1], atol=1e-6)
    b = plain.encode(texts, progress=False)
    assert not np.allclose(b[0], b[1], atol=1e-4) and not np.allclose(a[0], b[0], atol=1e-4)
    np.testing.assert_allclose(a[2], b[2], atol=1e-6)  # nothing to normalise: same vector
    assert "tweet_normalize" not in plain.fingerprint()["preprocessing"]
    assert build_encoder({**spec, "tweet_normalize": False}).fingerprint() == plain.fingerprint()
    assert tweet.fingerprint()["preprocessing"]["tweet_normalize"] is True
    assert tweet.fingerprint_id() != plain.fingerprint_id()
    ENCODERS.get("hf_text").check_spec({**spec, "tweet_normalize": True})
    with pytest.raises(ConfigError, match="tweet_normalize must be true or false"):
        build_encoder({**spec, "tweet_normalize": "yes"})
