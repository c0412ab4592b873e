"""Text decoding: the BOM / UTF-8 / chardet / fallback / lossy chain, NFC, and clean_text."""

from __future__ import annotations

import collections
import logging
import random
import unicodedata
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mmpipe.ingest.decode import (Decoded, clean_text, decode_bytes, decode_file, encoding_family, implausibility, plausible,
                           normalize_codec)
from mmpipe.core.errors import BadSampleError

REAL = Path(__file__).resolve().parents[2] / "shared" / "data" / "mvsa_single_lab5"


@pytest.mark.parametrize("text, codec, reported", [
    ("Hello “world” – café 😀 今天", "utf-8", "utf-8"),
    ("Hello “world” – café 😀", "utf-8-sig", "utf-8-sig"),
    ("Hello “world” – café 😀 今天", "utf-16", "utf-16"),  # Python's utf-16 writes a BOM
    ("Hello “world” – café 😀", "utf-32", "utf-32"),
    ("Can't wait “so excited”… 今天很好", "gb18030", "gb18030"),
    ("I love it “so much”…", "gb18030", "gb18030"),  # short English with GBK marks: chardet guesses Western
    ("Can't … ", "gb18030", "gb18030"),
    ("Yes, you CAN cut your own bangs—here's how", "gb18030", "gb18030"),
    ("Señor Müller’s naïve “idea” costs 10€", "cp1252", "cp1252"),
    ("so sad… “never again”", "cp1252", "cp1252"),
    ("said “yes…”", "cp1252", "cp1252"),
    ("Zoë’s naïveté", "cp1252", "cp1252"),
    ("Ich hätte gern größere Äpfel, señor", "latin-1", "latin-1"),
    ("Øre på Ålesund; Ñandú façade", "latin-1", "latin-1"),
    ("Ã© and café", "latin-1", "latin-1"),
    ("Ça va?", "latin-1", "latin-1"),
    ("über cool", "latin-1", "latin-1"),
    ("©Nike shoes, naïve", "latin-1", "latin-1"),
])
def test_round_trip(text, codec, reported):
    dec = decode_bytes(text.encode(codec))
    assert dec == Decoded(text, reported, False)


@pytest.mark.parametrize("text", ["café", "naïve", "cafés and naïve ones", "ação é boa"])
@pytest.mark.parametrize("codec", ["cp1252", "latin-1"])
def test_short_western_text_is_not_read_as_gbk(text, codec):
    # Without bytes 0x80-0x9F cp1252 and latin-1 give the same text; latin-1 is reported, the narrower one.
    dec = decode_bytes(text.encode(codec))
    assert (dec.text, dec.encoding, dec.lossy) == (text, "latin-1", False)


def test_confident_chardet_guess_is_used():
    text = "今日はとても良い天気ですね。友達と公園に行きました。"
    dec = decode_bytes(text.encode("shift_jis"))
    assert dec.text == text and dec.encoding in {"cp932", "shift_jis"}


def test_min_confidence_gates_chardet():
    text = "Привет, как дела? Сегодня отличная погода, и мы идём гулять в парк с друзьями."
    data = text.encode("cp1251")
    assert decode_bytes(data, min_confidence=0.3) == Decoded(text, "cp1251", False)
    assert decode_bytes(data, min_confidence=0.99).encoding != "cp1251"  # falls through to the fallbacks


def test_fallback_order_and_names():
    data = "I love it “so much”…".encode("gb18030")
    assert decode_bytes(data, fallbacks=("GBK",)).encoding == "gbk"
    # latin-1 reads any bytes, but chardet's (faint) GB18030 guess reads these more plausibly and wins
    assert decode_bytes(data, fallbacks=("ISO-8859-1",)) == Decoded("I love it “so much”…", "gb18030", False)
    assert decode_bytes(data, fallbacks=("nonsense-codec", "gb18030")).encoding == "gb18030"


def test_undecodable_bytes_are_lossy_and_loud(caplog):
    data = b"ok \xff\x80 bad \xfe"
    with caplog.at_level(logging.WARNING, logger="mmpipe.ingest.decode"):
        dec = decode_bytes(data, fallbacks=("gb18030",), min_confidence=1.01)
    assert dec.lossy and dec.encoding == "utf-8"
    assert dec.text.startswith("ok ") and "\ufffd" in dec.text and dec.text.endswith("\ufffd")
    assert "replacement" in caplog.text


@settings(max_examples=2000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.one_of(
    st.binary(max_size=300),  # random bytes
    st.text(max_size=40).map(lambda t: t.encode("utf-8")[:-1]),  # truncated multi-byte UTF-8
    st.sampled_from(["今天天气很好", "今日はいい天気", "오늘 날씨", "天氣很好"]).flatmap(  # truncated legacy CJK
        lambda t: st.sampled_from(["gb18030", "shift_jis", "euc_kr", "big5"]).map(
            lambda c: t.encode(c, errors="ignore")[:-1])),
    st.tuples(st.text(max_size=20), st.text(max_size=20)).map(  # two encodings in one file
        lambda ab: ab[0].encode("utf-8") + ab[1].encode("gb18030", errors="ignore")),
), fallbacks=st.sampled_from([(), ("gb18030",), ("gb18030", "cp1252", "latin-1")]))
def test_decoding_never_raises_and_never_calls_junk_clean(data, fallbacks):
    dec = decode_bytes(data, fallbacks=fallbacks)
    assert isinstance(dec.text, str)
    if not dec.lossy:  # a clean decode: a strict, plausible reading of every byte
        assert dec.binary is None and "\ufffd" not in dec.text and plausible(dec.text)
        assert unicodedata.normalize("NFC", data.decode(dec.encoding)) == dec.text
    if dec.binary is not None:
        assert dec.lossy


def test_binary_files_are_not_text():
    assert decode_bytes(b"\x00" * 100).binary == "100 NUL byte(s) in 100"
    rng = random.Random(1)
    junk = bytes(rng.randrange(256) for _ in range(400))
    dec = decode_bytes(junk)
    assert dec.lossy and dec.binary is not None
    assert decode_bytes("tab\tand newline\n".encode()).binary is None
    assert decode_bytes("Киев и Αθήνα".encode("gb18030"), fallbacks=("gb18030",)).encoding in ("gb18030", "utf-8")


def test_legacy_cjk_encodings_are_read_as_what_they_are():
    for text, codec in [("今日はとても良い天気ですね。散歩に行きましょう！", "shift_jis"),
                        ("今日はとても良い天気ですね。散歩に行きましょう！", "euc_jp"),
                        ("今天天氣很好，我們去公園散步吧。", "big5"), ("今天天气很好，我们去公园散步吧。", "gb18030")]:
        dec = decode_bytes(text.encode(codec))
        assert dec.text == text and not dec.lossy, (codec, dec)
    korean = "오늘 날씨가 정말 좋네요. 산책하러 갑시다!"
    assert decode_bytes(korean.encode("euc_kr"), fallbacks=("cp949", "gb18030")).text == korean


def test_empty_input():
    assert decode_bytes(b"") == Decoded("", "utf-8", False)


def test_nfc_normalisation():
    decomposed = "cafe\u0301 nai\u0308ve"
    assert decode_bytes(decomposed.encode("utf-8")).text == "caf\u00e9 na\u00efve"
    assert decode_bytes(decomposed.encode("utf-16")).text == "caf\u00e9 na\u00efve"


def test_codec_names_and_families():
    assert normalize_codec("GBK") == "gbk" and normalize_codec("Windows-1252") == "cp1252"
    assert normalize_codec("ISO-8859-1") == "latin-1" and normalize_codec("UTF8") == "utf-8"
    assert {encoding_family(e) for e in ("gb18030", "GBK", "GB2312")} == {"gb18030"}
    assert encoding_family("utf-8-sig") == "utf-8" and encoding_family("utf-16-le") == "utf-16"
    assert encoding_family("cp1252") == "cp1252"
    assert Decoded("x", "gbk", False).family == "gb18030"


def test_implausibility_prefers_the_right_reading():
    gbk = "Can't wait “so excited”…".encode("gb18030")
    assert implausibility(gbk.decode("gb18030")) < implausibility(gbk.decode("cp1252"))
    western = "naïve".encode("cp1252")
    assert implausibility(western.decode("cp1252")) < implausibility(western.decode("gb18030"))


def test_decode_file(tmp_path):
    p = tmp_path / "1.txt"
    p.write_bytes("RT @a: “nice”…\n".encode("gb18030"))
    assert decode_file(p) == Decoded("RT @a: “nice”…\n", "gb18030", False)
    with pytest.raises(BadSampleError) as exc:
        decode_file(tmp_path / "missing.txt")
    assert "missing.txt" in str(exc.value)


def test_clean_text():
    t = "RT @some_user: Loving  this @friend\tview http://t.co/AbC123 and www.example.com/x …  mail me@x.org http:/…"
    assert clean_text(t) == ("RT @some_user: Loving this @friend view http://t.co/AbC123 and www.example.com/x … "
                             "mail me@x.org http:/…")
    assert clean_text(t, rt_prefix=True).startswith("Loving this @friend")
    assert clean_text(t, urls=True) == "RT @some_user: Loving this @friend view and … mail me@x.org"
    assert clean_text(t, mentions=True) == ("RT : Loving this view http://t.co/AbC123 and www.example.com/x … "
                                            "mail me@x.org http:/…")
    assert clean_text(t, urls=True, mentions=True, rt_prefix=True) == "Loving this view and … mail me@x.org"
    assert clean_text("not RT @x: here", rt_prefix=True) == "not RT @x: here"  # only a leading prefix
    assert clean_text("  \n ") == ""


@pytest.mark.skipif(not (REAL / "data").is_dir(), reason="shared MVSA data not present")
def test_real_mvsa_counts():
    files = sorted((REAL / "data").glob("*.txt"))
    assert len(files) == 4869
    decoded = {f.name: decode_file(f) for f in files}
    families = collections.Counter(d.family for d in decoded.values())
    assert families == {"utf-8": 3738, "gb18030": 1131}, families
    assert not [n for n, d in decoded.items() if d.lossy]
    assert {d.encoding for d in decoded.values()} <= {"utf-8", "utf-8-sig", "gb18030", "gbk", "gb2312"}
    gb = [d.text for d in decoded.values() if d.family == "gb18030"]
    assert sum("…" in t for t in gb) > 800 and sum("“" in t for t in gb) > 40
    mojibake = ("¡°", "¡±", "¡­", "¡¯", "Â", "Ã", "¤", "§", "¨")
    assert not [t for t in gb if any(m in t for m in mojibake)]
    assert decoded["1099.txt"].text == "@missuniversechina 2013 Jin Ye makes… \n"
    assert decoded["110.txt"].text.startswith("“@preishaaaa: ")


# Written for these tests: everyday Korean tweets (EUC-KR bytes also decode strictly as GB18030, to common Hanzi).
KOREAN = ["오늘 날씨가 정말 좋네요. 산책하러 갑시다!", "너무 행복해요 ㅎㅎ 친구들이랑 영화 봤어요", "이 영화 진짜 최악이다. 돈 아깝다",
          "사랑해요", "배고파 ㅠㅠ", "내일 시험인데 공부를 하나도 안 했어요", "새 휴대폰 샀는데 카메라가 별로네",
          "주말에 가족과 함께 바다에 갔습니다. 물이 너무 차가웠어요", "ㅋㅋㅋㅋ 대박", "커피 한 잔 할래요?", "우리 팀이 이겼다!!"]


@pytest.mark.parametrize("text", KOREAN)
def test_euc_kr_is_read_as_korean_with_the_default_fallbacks(text):
    data = text.encode("euc_kr")
    assert implausibility(data.decode("gb18030")) == 0  # the GB18030 reading looks as clean as the Korean one
    assert decode_bytes(data) == Decoded(text, "euc_kr", False)


@pytest.mark.parametrize("text", ["진짜?", "좋아", "대박", "진짜 ㅋㅋ"])
def test_very_short_korean_is_right_or_lossy_never_clean_mojibake(text):
    # (one syllable alone, two bytes, is beyond any codec guess: 헐 stays the Hanzi 擎)
    dec = decode_bytes(text.encode("euc_kr"))
    assert dec.text == text or dec.lossy, dec


@pytest.mark.parametrize("text, codec", [
    # Chinese whose bytes also read as Hangul syllables (不好 as 꼇봤): chardet's language model keeps it Chinese
    ("不好", "gb18030"), ("不错", "gb18030"), ("好开心啊", "gb18030"), ("这家餐厅的菜真难吃，再也不来了", "gb18030"),
    ("不好", "big5"), ("下雨了，心情不好", "big5"), ("我很喜歡這部電影", "big5"),
])
def test_chinese_that_also_reads_as_hangul_stays_chinese(text, codec):
    dec = decode_bytes(text.encode(codec))
    assert (dec.text, dec.family, dec.lossy) == (text, encoding_family(codec), False)


@pytest.mark.parametrize("text", ["ありがとう", "今日はとても良い天気ですね。", "明日また会いましょう", "すごい！"])
def test_short_shift_jis_is_read_as_japanese(text):
    # The GB18030 reading (ありがとう as 偁傝偑偲偆) has no kana; the Shift-JIS one is made of them.
    dec = decode_bytes(text.encode("shift_jis"))
    assert (dec.text, dec.encoding, dec.lossy) == (text, "shift_jis", False)
