"""Text steps shared by every hashed key: NFC, trim, lowercase, character classes, SHA-256.

Before any of them, :func:`without_format_chars` removes invisible Unicode format characters
(category Cf: zero-width space and joiners, word joiner, BOM, soft hyphen, bidi marks) from
every string of the raw event, so ``"Purchase\u200b"`` is the event ``Purchase`` and an e-mail
pasted with a zero-width space hashes like the one typed without it.

The rules table of docs/capi.md says every hashed key goes through "Unicode NFC, trim, lowercase,
the key's own step, then SHA-256 of the UTF-8 bytes as lowercase hex". The first three steps
and the last one live here; the key's own step lives in :mod:`stream.core.normalize.keys`.

Most values are ASCII, so each helper has an ASCII fast path (one C-level regex or method
call) and a Unicode path that looks at each character's general category. Python's ``re``
has no ``\\p{L}``, and ``\\w`` drops combining marks, which would break Devanagari or Thai
names, hence the category test.
"""

from __future__ import annotations

import hashlib
import re
import sys
import unicodedata
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Final

import orjson

_ASCII_NOT_ALNUM: Final = re.compile(r"[^a-z0-9]+")
_ASCII_NOT_ALPHA: Final = re.compile(r"[^a-z]+")

#: Shapes of values that arrive already hashed (docs/capi.md §3.3, §3.5).
_HEX64: Final = re.compile(r"[0-9a-fA-F]{64}")
_HEX64_APPENDIX: Final = re.compile(r"[0-9a-fA-F]{64}\.[A-Za-z0-9_-]+")
_HEX32: Final = re.compile(r"[0-9a-fA-F]{32}")

#: What :func:`hashed_shape` answers.
NOT_HASHED: Final = 0
SHA256: Final = 1
SHA256_APPENDIX: Final = 2
MD5: Final = 3


@lru_cache(maxsize=1)
def _format_chars() -> dict[int, None]:
    """Every code point of category Cf, for ``str.translate`` (read once, on first need).

    One pass over the code space (~0.1 s), made only when a non-ASCII string first arrives;
    a C-level translate is then ~10x cheaper than asking for each character's category.
    """
    category = unicodedata.category
    return {cp: None for cp in range(0x80, sys.maxunicode + 1) if category(chr(cp)) == "Cf"}


@dataclass(frozen=True, slots=True)
class _FormatBytes:
    """How to find a format character in UTF-8 bytes (a JSON text) without decoding them."""

    #: every byte value except the first bytes of format characters' encodings, for
    #: ``bytes.translate(None, other_bytes)``: what is left are the bytes that could start one
    other_bytes: bytes
    #: the encodings themselves, grouped by all but their last byte, e.g.
    #: ``\\xe2\\x80[\\x8b-\\x8f\\xaa-\\xae]`` for U+200B..U+200F and U+202A..U+202E
    pattern: re.Pattern[bytes]

    def found_in(self, data: bytes) -> bool:
        """Whether ``data`` (valid UTF-8) holds a format character.

        Accented Latin, Cyrillic or CJK text starts its characters with other bytes (``é`` is
        ``c3 a9``), so the C-level translate usually answers; the regex (~3 ns a byte) runs only
        when a possible first byte is there (``e2`` also starts curly quotes and ``€``).
        """
        return bool(data.translate(None, self.other_bytes)) and (
            self.pattern.search(data) is not None
        )


@lru_cache(maxsize=1)
def _format_bytes() -> _FormatBytes:
    """:class:`_FormatBytes` built from :func:`_format_chars`, so the two never disagree."""
    lasts: dict[bytes, list[int]] = {}
    for cp in _format_chars():
        encoded = chr(cp).encode()
        lasts.setdefault(encoded[:-1], []).append(encoded[-1])
    alternatives = [
        b"".join(b"\\x%02x" % byte for byte in prefix)
        + b"[" + b"".join(b"\\x%02x" % byte for byte in sorted(ends)) + b"]"
        for prefix, ends in sorted(lasts.items())
    ]  # fmt: skip
    firsts = {prefix[0] for prefix in lasts}
    return _FormatBytes(
        other_bytes=bytes(byte for byte in range(256) if byte not in firsts),
        pattern=re.compile(b"|".join(alternatives)),
    )


def drop_format_chars(value: str) -> str:
    """``value`` without Unicode format characters (general category Cf).

    ``"Purchase\u200b"`` → ``"Purchase"``; ``"jo\u00adhn@example.com"`` → ``"john@example.com"``.
    Cf holds U+200B..U+200F, U+202A..U+202E, U+2060..U+2064, U+2066..U+206F, U+FEFF, U+00AD and a
    few others; none of them is visible or changes what a person typed, so keeping one would
    only make the value differ from the same value typed by hand. (A ZWJ inside an emoji
    sequence is lost too: no match key or event name depends on emoji rendering.)
    """
    if value.isascii():
        return value
    return value.translate(_format_chars())


def without_format_chars(value: Any) -> Any:
    """``value`` with :func:`drop_format_chars` applied to every string in it, map keys included.

    Every Cf character is outside ASCII, and nearly every value has none: ``value`` itself is
    returned when its JSON form holds no format character. orjson writes every non-ASCII
    character as its UTF-8 bytes, never escaped (a test pins it for each Cf character), so one
    C-level look answers: ``isascii()`` for the ASCII events, :meth:`_FormatBytes.found_in`
    for those with accented names or other scripts (a typical event: ~2-3 µs either way).
    Otherwise the walk copies only the containers on the way to a non-ASCII string: an event
    whose only format character is in a name copies the event's top map, ``user_data`` and
    that name's list, not its ~95 leaves.
    """
    try:
        dumped = orjson.dumps(value)
    except TypeError:  # orjson.JSONEncodeError: bytes, huge ints, non-string keys
        return _cleaned(value)
    if dumped.isascii() or not _format_bytes().found_in(dumped):
        return value
    return _cleaned(value)


def _cleaned(value: Any) -> Any:
    """``value`` with format characters dropped; the same object when nothing changed."""
    kind = type(value)
    if kind is str:
        return value if value.isascii() else drop_format_chars(value)
    if kind is dict:
        return _cleaned_map(value)
    if kind is list or kind is tuple:
        items: Any = None
        for index, item in enumerate(value):
            if item is None or (type(item) is str and item.isascii()):
                continue
            clean = _cleaned(item)
            if clean is not item:
                if items is None:
                    items = list(value)
                items[index] = clean
        if items is None:
            return value
        return items if kind is list else tuple(items)
    return value


def _cleaned_map(value: dict[Any, Any]) -> dict[Any, Any]:
    out: dict[Any, Any] | None = None
    for key, item in value.items():
        if type(key) is not str or not key.isascii():
            return {_cleaned(k): _cleaned(v) for k, v in value.items()}  # rare: rebuild it all
        kind = type(item)
        if item is None or (kind is str and item.isascii()) or not item:
            continue
        if kind is list and len(item) == 1:
            # the common shape of user_data: one value in a list
            one = item[0]
            if type(one) is str and one.isascii():
                continue
        elif kind is dict and len(item) > 8:
            # a section (user_data, custom_data): one C-level look before the walk
            try:
                if orjson.dumps(item).isascii():
                    continue
            except TypeError:  # orjson.JSONEncodeError: bytes, huge ints, non-string keys
                pass
        clean = _cleaned(item)
        if clean is not item:
            if out is None:
                out = dict(value)
            out[key] = clean
    return value if out is None else out


def prepare(value: str) -> str:
    """NFC, trim, lowercase: the common first steps of every hashed key.

    ``" Valéry "`` (decomposed, as macOS writes it) → ``"valéry"`` (composed).
    """
    if value.isascii():
        return value.strip().lower()
    return unicodedata.normalize("NFC", value).strip().lower()


def keep_alnum(value: str) -> str:
    """Keep letters, combining marks and digits of every script; ``value`` is prepared.

    ``"mary-jane 2"`` → ``"maryjane2"``; ``"o'brien"`` → ``"obrien"``.
    """
    if value.isascii():
        return _ASCII_NOT_ALNUM.sub("", value)
    category = unicodedata.category
    return "".join([char for char in value if category(char)[0] in "LMN"])


def keep_letters(value: str) -> str:
    """Keep letters and combining marks of every script; ``value`` is prepared.

    ``"washington d.c. 2"`` → ``"washingtondc"``; ``"saint-étienne"`` → ``"saintétienne"``.
    """
    if value.isascii():
        return _ASCII_NOT_ALPHA.sub("", value)
    category = unicodedata.category
    return "".join([char for char in value if category(char)[0] in "LM"])


def fold_accents(value: str) -> str:
    """Drop combining marks after decomposition, for table look-ups only (never hashed).

    ``"québec"`` → ``"quebec"``.
    """
    if value.isascii():
        return value
    decomposed = unicodedata.normalize("NFD", value)
    return unicodedata.normalize(
        "NFC", "".join([char for char in decomposed if not unicodedata.combining(char)])
    )


def sha256_hex(value: str) -> str:
    """SHA-256 of the UTF-8 bytes, lowercase hex: ``"mary"`` → ``"6915771b…c449f4ec"``.

    ``surrogatepass`` only matters for lone surrogates, which no decoded Avro string holds;
    it keeps the "never raise on any input string" promise for callers that build records by
    hand.
    """
    try:
        data = value.encode()
    except UnicodeEncodeError:
        data = value.encode("utf-8", "surrogatepass")
    return hashlib.sha256(data).hexdigest()


def hashed_shape(trimmed: str) -> int:
    """Which already-hashed shape ``trimmed`` has: NOT_HASHED, SHA256, SHA256_APPENDIX or MD5.

    The length test first keeps the common case (a clear-text value) to one ``len`` call.
    """
    length = len(trimmed)
    if length == 64:
        return SHA256 if _HEX64.fullmatch(trimmed) else NOT_HASHED
    if length > 65 and trimmed[64] == ".":
        return SHA256_APPENDIX if _HEX64_APPENDIX.fullmatch(trimmed) else NOT_HASHED
    if length == 32:
        return MD5 if _HEX32.fullmatch(trimmed) else NOT_HASHED
    return NOT_HASHED
