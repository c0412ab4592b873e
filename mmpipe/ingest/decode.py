"""Decode text files of unknown encoding, never silently.

The chain, first success wins unless noted:

1. a byte-order mark (UTF-8, UTF-16, UTF-32);
0. bytes that are not text at all (NUL bytes without a UTF-16/32 byte-order mark, or more than 10 % control
   bytes) are flagged ``binary`` (and lossy): the manifest refuses them as bad samples;
1. a byte-order mark (UTF-8, UTF-16, UTF-32);
2. strict UTF-8;
3. chardet's guess, when its confidence is at least ``min_confidence``; a less sure multi-byte CJK guess
   (Shift-JIS, EUC-JP, EUC-KR, Big5, GB18030: chardet's distribution analysis tells them apart even on a short
   tweet whose confidence stays low) is tried after the fallbacks, where it wins only by reading more plausibly
   (Big5 read as GB18030 is full of characters outside GB2312), so the configured fallbacks stay the data set's
   prior (MVSA's Japanese tweets are GBK, which chardet takes for EUC-JP); each only when it decodes strictly;
4. the configured fallbacks, in order, strict;
5. UTF-8 with replacement characters, flagged ``lossy=True``.

Every reading must also be plausible (:func:`implausibility` per character at most ``MAX_IMPLAUSIBILITY``);
when the best strict reading is not, it is kept but flagged ``lossy``: mojibake is never reported clean.

Korean and Japanese double bytes also read as plausible GB18030 Hanzi; where such a reading ties, a Korean or
Japanese reading that shows its own script and that chardet's language models rate clearly higher wins, and
when chardet cannot tell them apart the decode is flagged lossy (see :func:`_rival_reading`).

Steps 3 and 4 form one ranked list of candidates (chardet's guess first). Single-byte codecs such as
cp1252 and latin-1 decode *any* bytes, and CJK codecs decode many Western byte strings too, so a candidate
is passed over when a later one reads strictly more plausibly (see :func:`implausibility`): English tweets
with a few GBK quote marks come out as “…”, not as ``¡°``, and ``naïve`` in cp1252 does not turn into
``na飗e``. The text is then NFC-normalised.
"""

from __future__ import annotations

import codecs
import functools
import logging
import os
import re
import unicodedata
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from mmpipe.core.errors import BadSampleError

log = logging.getLogger(__name__)

DEFAULT_FALLBACKS: tuple[str, ...] = ("gb18030", "cp1252", "latin-1")
CJK_MULTIBYTE = frozenset({"gb18030", "gbk", "gb2312", "big5", "big5hkscs", "cp950", "shift_jis", "cp932", "euc_jp",
                           "euc_kr", "cp949", "iso2022_jp", "iso2022_kr"})
MAX_IMPLAUSIBILITY = 0.5  # per character; clean text scores 0, wrong-codec readings of Western text about 0.7-1
# C0 control bytes that plain text does not hold (tab, newline, form feed, carriage return and escape aside)
_CONTROL_BYTES = bytes(b for b in range(32) if b not in (9, 10, 12, 13, 27))
GB18030_FAMILY = frozenset({"gb18030", "gbk", "gb2312", "hz"})
_ALIASES = {"iso8859-1": "latin-1"}  # codecs.lookup's name for latin-1; reports read better with the common one
_BOMS: tuple[tuple[bytes, str], ...] = (
    (codecs.BOM_UTF8, "utf-8-sig"),
    (codecs.BOM_UTF32_LE, "utf-32"),  # before UTF-16 LE: it starts with the same two bytes
    (codecs.BOM_UTF32_BE, "utf-32"),
    (codecs.BOM_UTF16_LE, "utf-16"),
    (codecs.BOM_UTF16_BE, "utf-16"),
)


@dataclass(frozen=True)
class Decoded:
    """A decoded text and how it was obtained."""

    text: str  # NFC-normalised
    encoding: str  # normalised codec name actually used, e.g. "utf-8", "gb18030", "cp1252", "latin-1"
    lossy: bool  # True when no reading is clean: replacement characters, or no plausible reading
    binary: str | None = None  # why the bytes are not text at all (NUL bytes, control bytes); then lossy too

    @property
    def family(self) -> str:
        """The encoding family, for counting: see :func:`encoding_family`."""
        return encoding_family(self.encoding)


def normalize_codec(name: str) -> str:
    """Python's canonical name for a codec (``"GBK"`` -> ``"gbk"``, ``"Windows-1252"`` -> ``"cp1252"``,
    ``"ISO-8859-1"`` -> ``"latin-1"``). Raises LookupError for unknown names."""
    canonical = codecs.lookup(name).name
    return _ALIASES.get(canonical, canonical)


def encoding_family(encoding: str) -> str:
    """Group codec names for reports: gb2312/gbk/gb18030 -> ``"gb18030"``, utf-8-sig -> ``"utf-8"``,
    utf-16-le/-be -> ``"utf-16"`` (likewise utf-32); anything else is returned normalised."""
    try:
        enc = normalize_codec(encoding)
    except LookupError:
        return encoding
    if enc in GB18030_FAMILY:
        return "gb18030"
    for base in ("utf-8", "utf-16", "utf-32"):
        if enc.startswith(base):
            return base
    return enc


# --- plausibility -------------------------------------------------------------------------------------------

_CJK_RANGES = (
    (0x2E80, 0x2FDF), (0x3000, 0x33FF), (0x3400, 0x4DBF), (0x4E00, 0x9FFF), (0xA960, 0xA97F),
    (0xAC00, 0xD7FF), (0xF900, 0xFAFF), (0xFE30, 0xFE4F), (0xFF00, 0xFFEF), (0x20000, 0x3FFFF),
)
# Non-ASCII punctuation that legitimately stands next to other non-ASCII characters in Western text
# (plus the General Punctuation block: dashes, quotes, ellipses, daggers, primes).
_SMART_PUNCT = frozenset("€™") | frozenset(map(chr, range(0x2010, 0x205F)))

# Latin-1 characters that real text almost never contains but GBK lead bytes 0xA4/0xA6/0xA8 produce.
_ODD_LATIN1 = {"\xa4": 1.0, "\xa6": 0.5, "\xa8": 1.0, "\xad": 1.0, "\xaf": 1.0, "\xb4": 0.5, "\xb8": 1.0}


def _is_cjk(ch: str) -> bool:
    o = ord(ch)
    return any(lo <= o <= hi for lo, hi in _CJK_RANGES)


@functools.lru_cache(maxsize=8192)
def _in_gb2312(ch: str) -> bool:
    try:
        ch.encode("gb2312")
        return True
    except UnicodeEncodeError:
        return False


def implausibility(text: str) -> float:
    """How much ``text`` looks like the product of a wrong codec; 0 for clean text, higher is worse.

    The text's codec is not needed: each candidate decoding of the same bytes is scored and compared.
    Scored: control characters (C0 except tab/newline/CR; C1, which is how latin-1 reads multi-byte text),
    replacement and private-use characters; runs of adjacent non-ASCII non-CJK characters holding symbols or
    several letters (``¡°``, ``¡­``, ``¤Î``, ``¨¦`` are how GBK reads in cp1252/latin-1; smart quotes,
    dashes and ellipses are exempt) and Latin-1 characters real text hardly uses (``¨ ¤ ¸`` soft hyphen);
    lone CJK letters glued to ASCII letters (``na飗e`` is how ``naïve`` in cp1252 reads in GBK); and
    characters outside GB2312 (a Western accented letter followed by an ASCII byte forms a GBK-extension
    pair), unless they are letters inside a longer CJK run (Japanese kanji in GBK).
    """
    score = 0.0
    n = len(text)
    i = 0
    while i < n:
        ch = text[i]
        o = ord(ch)
        if o < 0x80:
            if o < 0x20 and ch not in "\t\n\r":
                score += 4
            i += 1
            continue
        if o <= 0x9F or ch == "\ufffd":
            score += 4
            i += 1
            continue
        if 0xE000 <= o <= 0xF8FF:
            score += 1
            i += 1
            continue
        if ch.isspace():
            i += 1
            continue
        cjk = _is_cjk(ch)
        j = i + 1
        while j < n:
            c2 = text[j]
            if ord(c2) < 0x80 or c2.isspace() or _is_cjk(c2) != cjk or 0xE000 <= ord(c2) <= 0xF8FF:
                break
            if ord(c2) <= 0x9F or c2 == "\ufffd":
                break
            j += 1
        run = text[i:j]
        if cjk:
            if len(run) == 1 and unicodedata.category(ch).startswith("L"):
                left = text[i - 1] if i > 0 else ""
                right = text[j] if j < n else ""
                glued = (left.isascii() and left.isalnum()) + (right.isascii() and right.isalnum())
                score += (0, 1, 3)[glued]
            for c in run:
                if 0xAC00 <= ord(c) <= 0xD7A3 or 0x3131 <= ord(c) <= 0x318E or 0x3040 <= ord(c) <= 0x30FF:
                    continue  # Hangul (syllables, jamo as in ㅋㅋ) and kana: outside GB2312, but what Korean and
                    # Japanese are made of
                if not _in_gb2312(c):  # GBK-extension pairs: what a Western high byte + ASCII byte forms
                    if not unicodedata.category(c).startswith("L"):
                        score += 1
                    elif len(run) <= 2:
                        score += 1
        elif all(0x370 <= ord(c) <= 0x4FF and c.isalpha() for c in run):
            pass  # a Greek or Cyrillic word (GBK carries both scripts; latin-1 and cp1252 readings never make them)
        else:
            score += sum(_ODD_LATIN1.get(c, 0.0) for c in run)
            if len(run) >= 2:
                pen = sum(0.5 if unicodedata.category(c)[0] in "LM" else 1.0 for c in run if c not in _SMART_PUNCT)
                score += max(0.0, pen - 0.5)  # one letter next to punctuation is not suspicious by itself
        i = j
    return max(score, 0.0)


# --- the chain ----------------------------------------------------------------------------------------------

def _strict(data: bytes, codec: str) -> str | None:
    try:
        return data.decode(codec)
    except (UnicodeDecodeError, LookupError):
        return None


def _from_bom(data: bytes) -> tuple[str, str] | None:
    for bom, codec in _BOMS:
        if data.startswith(bom):
            text = _strict(data, codec)
            if text is not None:
                return text, codec
    return None


def _chardet_guess(data: bytes) -> tuple[str, float] | None:
    import chardet  # imported lazily: only non-UTF-8 input needs it

    result = chardet.detect(data)
    enc, conf = result.get("encoding"), result.get("confidence") or 0.0
    if not enc:
        return None
    try:
        return normalize_codec(enc), float(conf)
    except LookupError:
        return None


# --- Korean and Japanese against a tied reading --------------------------------------------------------------
# EUC-KR and Shift-JIS double bytes also decode strictly as GB18030, to runs of common Hanzi that score as clean
# as the right reading (사랑해요 reads 荤尔秦夸, ありがとう in Shift-JIS 偁傝偑偲偆). Two independent kinds of
# evidence then decide. The script: a Korean reading is made of the 2,350 everyday Hangul syllables of KS X 1001
# (the GB18030 reading of Chinese bytes as Korean mixes them with Hanja and the rare UHC syllables), a Japanese
# one shows kana that the other reading lacks. And chardet's language models (``detect_all``), which must rate
# the language clearly above the tied reading's: MVSA's GBK Japanese keeps its GBK kana in an EUC-JP reading, and
# English with GBK quote marks reads as one stray Hangul syllable, so neither is ever taken for the rival.
_RIVALS: dict[str, tuple[str, ...]] = {"ko": ("euc_kr", "cp949"), "ja": ("shift_jis", "cp932", "euc_jp")}
_LANGUAGE = {"euc_kr": "ko", "cp949": "ko", "johab": "ko", "iso2022_kr": "ko", "shift_jis": "ja", "cp932": "ja",
             "euc_jp": "ja", "shift_jis_2004": "ja", "shift_jisx0213": "ja", "euc_jis_2004": "ja",
             "euc_jisx0213": "ja", "iso2022_jp": "ja", "big5": "zh-tw", "big5hkscs": "zh-tw", "cp950": "zh-tw"}
RIVAL_MARGIN = 2.0  # chardet's rating of the rival's language over the tied reading's, for a clean decode
RIVAL_MIN_LETTERS = 2  # Hangul syllables or kana a rival reading must show


def _language(codec: str) -> str:
    """``ko``, ``ja``, ``zh-tw`` or the codec's family (``gb18030``, ``cp1252``, ...), for comparing ratings."""
    return _LANGUAGE.get(codec) or encoding_family(codec)


@functools.lru_cache(maxsize=4096)
def _ks_syllable(ch: str) -> bool:
    """A Hangul syllable of KS X 1001: EUC-KR's two-byte ones, which CP949 also encodes at 0xB0A1-0xC8FE."""
    if not 0xAC00 <= ord(ch) <= 0xD7A3:
        return False
    b = ch.encode("cp949")
    return b[0] >= 0xB0 and b[1] >= 0xA1


def script_letters(text: str, language: str) -> tuple[int, int]:
    """(letters of ``language``'s own script, all CJK letters) in ``text``: KS X 1001 Hangul syllables for
    ``ko``, kana for ``ja``; CJK letters are Hangul syllables, Han and kana (jamo such as ㅋㅋ aside)."""
    own = total = 0
    for ch in text:
        o = ord(ch)
        kana = 0x3041 <= o <= 0x3096 or 0x30A1 <= o <= 0x30FA  # letters, not the sound marks (゛ is GBK's ～)
        if kana or 0xAC00 <= o <= 0xD7A3 or 0x3400 <= o <= 0x9FFF or 0xF900 <= o <= 0xFAFF:
            total += 1
            own += kana if language == "ja" else _ks_syllable(ch)
    return own, total


def _shows_script(rival: str, language: str, other: str) -> int:
    """How many letters of its own script ``rival`` shows where it reads as ``language`` (0: it does not):
    Korean is nearly all KS X 1001 syllables; Japanese has kana, more of them than the ``other`` reading."""
    own, total = script_letters(rival, language)
    if own < RIVAL_MIN_LETTERS:
        return 0
    if language == "ko":
        return own if own >= 0.9 * total else 0
    return own if own >= 0.2 * total and own > script_letters(other, "ja")[0] else 0


def _chardet_ratings(data: bytes) -> dict[str, float]:
    """chardet's best confidence per language (see :func:`_language`), from all of its candidates."""
    import chardet

    ratings: dict[str, float] = {}
    for r in chardet.detect_all(data, ignore_threshold=True):
        try:
            lang = _language(normalize_codec(r.get("encoding") or ""))
        except LookupError:
            continue
        ratings[lang] = max(ratings.get(lang, 0.0), float(r.get("confidence") or 0.0))
    return ratings


def _rival_reading(data: bytes, codec: str, text: str, score: float) -> tuple[str, str, bool] | None:
    """A Korean or Japanese reading of ``data`` that beats the chain's pick ``codec``/``text`` (implausibility
    ``score``) on script and on chardet's rating: (codec, text, lossy). Lossy with the pick kept when chardet
    rates neither clearly higher (an ambiguous decode is never clean); None when no rival shows its script."""
    ratings = None
    for language, names in _RIVALS.items():
        if _language(codec) == language:
            continue
        readings = [(name, t) for name in names if (t := _strict(data, name)) is not None]
        shown = [(_shows_script(t, language, text), -k, name, t) for k, (name, t) in enumerate(readings)]
        shown = [s for s in shown if s[0] and implausibility(s[3]) <= score]
        if not shown:
            continue
        _, _, name, rival = max(shown)
        ratings = _chardet_ratings(data) if ratings is None else ratings
        theirs, ours = ratings.get(language, 0.0), ratings.get(_language(codec), 0.0)
        if theirs > 0 and theirs >= RIVAL_MARGIN * ours:
            return name, rival, False
        if ours < RIVAL_MARGIN * theirs:
            log.warning("ambiguous text: reads as %s and as %s (%s), chardet cannot tell; flagged lossy",
                        codec, name, language)
            return codec, text, True
    return None


def binary_reason(data: bytes) -> str | None:
    """Why ``data`` is not text (NUL bytes, a high share of control bytes), or None."""
    if not data or any(data.startswith(bom) for bom, codec in _BOMS if codec in ("utf-16", "utf-32")):
        return None
    nul = data.count(0)
    if nul:
        return f"{nul} NUL byte(s) in {len(data)}"
    ctrl = len(data) - len(data.translate(None, _CONTROL_BYTES))
    if ctrl > 0.1 * len(data):
        return f"{ctrl} control bytes in {len(data)}"
    return None


def plausible(text: str, score: float | None = None) -> bool:
    """Whether ``text`` reads as text in its codec (:func:`implausibility` per character; ``score``: that
    implausibility, when already known)."""
    return (implausibility(text) if score is None else score) <= MAX_IMPLAUSIBILITY * max(len(text), 1)


def _result(text: str, encoding: str, lossy: bool = False, score: float | None = None) -> Decoded:
    """``score``: the text's :func:`implausibility`, when already known."""
    return Decoded(unicodedata.normalize("NFC", text), encoding, lossy or not plausible(text, score))


def _decode(data: bytes, fallbacks: Sequence[str], min_confidence: float, source: str | None) -> Decoded:
    data = bytes(data)
    binary = binary_reason(data)
    if binary is not None:
        return Decoded(data.decode("utf-8", errors="replace"), "binary", True, binary)
    bom = _from_bom(data)
    if bom is not None:
        return _result(*bom)
    try:
        return _result(data.decode("utf-8"), "utf-8")
    except UnicodeDecodeError:
        pass

    guess, conf = _chardet_guess(data) or ("utf-8", 0.0)
    sure = conf >= min_confidence and not guess.startswith("utf-8")
    names: list[str] = [guess] if sure else []  # ranked first: it wins ties
    for fb in fallbacks:
        try:
            name = normalize_codec(fb)
        except LookupError:
            log.warning("unknown fallback encoding %r ignored", fb)
            continue
        if name not in names:
            names.append(name)
    if not sure and guess in CJK_MULTIBYTE and guess not in names:
        names.append(guess)  # a faint CJK guess: it wins only by reading more plausibly than the fallbacks
    candidates = [(name, text) for name in names if (text := _strict(data, name)) is not None]
    if candidates:
        scores = [implausibility(text) for _, text in candidates]
        best = min(range(len(candidates)), key=lambda k: (scores[k], k))
        codec, text = candidates[best]
        if codec == "cp1252" and "latin-1" in names and not any(0x80 <= b <= 0x9F for b in data):
            codec = "latin-1"  # identical text; report the narrower charset
        rival = _rival_reading(data, codec, text, scores[best])
        if rival is not None:
            return _result(rival[1], rival[0], lossy=rival[2])
        return _result(text, codec, score=scores[best])

    log.warning("%s: no encoding decodes it strictly; decoded as UTF-8 with replacement characters",
                source or "text")
    text = data.decode("utf-8", errors="replace")
    return _result(text[1:] if text.startswith("\ufeff") else text, "utf-8", lossy=True)


def decode_bytes(data: bytes, fallbacks: Sequence[str] = DEFAULT_FALLBACKS,
                 min_confidence: float = 0.8) -> Decoded:
    """Decode ``data`` through the chain described in the module docstring. Never raises for bad bytes."""
    return _decode(data, fallbacks, min_confidence, None)


def decode_file(path: str | os.PathLike, fallbacks: Sequence[str] = DEFAULT_FALLBACKS,
                min_confidence: float = 0.8) -> Decoded:
    """Read and decode a file; raises BadSampleError (naming the file) only if it cannot be read. A file that is
    not text comes back with ``binary`` set (the manifest refuses it)."""
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise BadSampleError(str(path), f"cannot read text file: {exc}") from exc
    return _decode(data, fallbacks, min_confidence, str(path))


# --- cleaning -----------------------------------------------------------------------------------------------

_RT_PREFIX = re.compile(r"^\s*RT\s+@\w+\s*:?\s*")
_URL = re.compile(r"(?:\bhttps?:/\S*|\bwww\.\S+)", re.IGNORECASE)
_MENTION = re.compile(r"(?<![\w@])@\w+")


def clean_text(text: str, urls: bool = False, mentions: bool = False, rt_prefix: bool = False) -> str:
    """Optionally drop a leading ``RT @user:``, URLs (http, https, www; also truncated ``http:/…``) and
    ``@mentions`` (not e-mail addresses); then collapse runs of whitespace to single spaces and strip."""
    if rt_prefix:
        text = _RT_PREFIX.sub("", text, count=1)
    if urls:
        text = _URL.sub(" ", text)
    if mentions:
        text = _MENTION.sub(" ", text)
    return " ".join(text.split())
