"""Feed bytes made fit for the XML parser: one known encoding, no stray bytes, no entity bombs."""

from __future__ import annotations

import codecs
import re
from collections import Counter
from collections.abc import Callable

from feedparser.sanitizer import RE_ENTITY_PATTERN, replace_doctype

UTF8_BOM = codecs.BOM_UTF8
# Real feeds declare a few short entities at most. More is a "quadratic blowup" attack: expat
# stops it (at 100 times the input), but feedparser's fallback parser then expands it unbounded.
ENTITY_EXPANSION_LIMIT = 1_000_000  # characters
# The decode error handler registered below: each byte that is not valid in the codec is read
# as windows-1252, the bytes windows-1252 leaves undefined as the C1 control of that number.
WINDOWS_1252_FALLBACK = "digest.windows-1252"

_CHARSET_PARAM = re.compile(r"charset\s*=\s*[\"']?([\w.:-]+)", re.I)
_UNICODE_BOMS = (codecs.BOM_UTF32_LE, codecs.BOM_UTF32_BE, codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)
_XML_DECLARATION = re.compile(r"^\s*<\?xml[^>]*\?>")
_XML_ENCODING = re.compile(rb"^<\?xml[^>]*?\sencoding\s*=\s*[\"']([\w.:-]*)[\"']")
_XML_ENCODING_TEXT = re.compile(r"^(<\?xml[^>]*?\sencoding\s*=\s*)([\"'])[\w.:-]*\2")
# One valid multi-byte UTF-8 sequence (the table of RFC 3629).
_UTF8_SEQUENCE = re.compile(
    rb"[\xc2-\xdf][\x80-\xbf]|\xe0[\xa0-\xbf][\x80-\xbf]|[\xe1-\xec\xee\xef][\x80-\xbf]{2}"
    rb"|\xed[\x80-\x9f][\x80-\xbf]|\xf0[\x90-\xbf][\x80-\xbf]{2}|[\xf1-\xf3][\x80-\xbf]{3}"
    rb"|\xf4[\x80-\x8f][\x80-\xbf]{2}"
)
_HIGH_BYTES = bytes(range(128, 256))
# A DOCTYPE as expat reads it: strings, comments and processing instructions may hold "]" or ">".
# Possessive repeats, so a DOCTYPE that never closes fails fast instead of backtracking.
_DOCTYPE = re.compile(
    rb"<!DOCTYPE(?:[^\[>\"']|\"[^\"]*\"|'[^']*')*+"
    rb"(?:\[(?:<!--.*?-->|<\?.*?\?>|\"[^\"]*\"|'[^']*'|[^\]\"'])*+\])?\s*>",
    re.S,
)
# The only declaration we let through: a general entity with a literal value.
_LITERAL_ENTITY = re.compile(rb"<!ENTITY\s+([\w.:-]+)\s+(?:\"([^\"&]*)\"|'([^'&]*)')\s*>")
_CHARACTER_ENTITY = re.compile(rb"<!ENTITY\s+[\w.:-]+\s+([\"'])&#\w+;\1\s*>")
_ENTITY_REFERENCE = re.compile(rb"&([\w.:-]+);")
_FIRST_ELEMENT = re.compile(rb"<\w")  # as feedparser finds the end of the prolog
_WINDOWS_1252 = [bytes([b]).decode("cp1252", errors="ignore") or chr(b) for b in range(256)]


def _windows_1252_fallback(error: UnicodeError) -> tuple[str, int]:
    if not isinstance(error, UnicodeDecodeError):
        raise error
    bad = error.object[error.start : error.end]
    return "".join(_WINDOWS_1252[byte] for byte in bad), error.end


codecs.register_error(WINDOWS_1252_FALLBACK, _windows_1252_fallback)


def sniff_text(data: bytes) -> str:
    """Enough of a decoding to see markup: BOMs and BOM-less UTF-16 are honoured."""
    for bom, codec in (
        (b"\xff\xfe\x00\x00", "utf-32-le"),
        (b"\x00\x00\xfe\xff", "utf-32-be"),
        (b"\xff\xfe", "utf-16-le"),
        (b"\xfe\xff", "utf-16-be"),
        (UTF8_BOM, "utf-8"),
    ):
        if data.startswith(bom):
            return data[len(bom) :].decode(codec, errors="replace")
    wide = _wide_codec(data)
    return data.decode(wide, errors="replace") if wide else data.decode("latin-1")


def _wide_codec(data: bytes) -> str:
    """UTF-32 or UTF-16 recognised by its zero bytes, for documents without a byte order mark."""
    if data.startswith(b"\x00\x00\x00<"):
        return "utf-32-be"
    if data.startswith(b"<\x00\x00\x00"):
        return "utf-32-le"
    if data[1:20:2].count(0) > 5:
        return "utf-16-le"
    if data[0:20:2].count(0) > 5:
        return "utf-16-be"
    return ""


def repair_xml(data: bytes, content_type: str = "") -> tuple[bytes, list[str]]:
    """Fix what defeats XML parsers (or endangers us) yet loses nothing a reader would miss.

    The charset of `content_type` (the HTTP header) applies when the document declares none.
    Returns the bytes and one phrase per defect fixed.
    """
    found = _CHARSET_PARAM.search(content_type)
    charset = found[1] if found else ""
    steps: tuple[Callable[[bytes, str], tuple[bytes, str]], ...] = (
        _wide_without_bom,
        _space_before_declaration,
        _to_utf8,
        _drop_risky_doctype,
        _drop_large_entities,
    )
    defects: list[str] = []
    for step in steps:
        data, defect = step(data, charset)
        if defect:
            defects.append(defect)
    return data, defects


def _wide_without_bom(data: bytes, _charset: str) -> tuple[bytes, str]:
    codec = "" if data.startswith((*_UNICODE_BOMS, UTF8_BOM)) else _wide_codec(data)
    if not codec:
        return data, ""
    text = _XML_DECLARATION.sub("", data.decode(codec, errors="replace"), count=1)
    return text.encode("utf-8"), f"{codec} without a byte order mark"


def _space_before_declaration(data: bytes, _charset: str) -> tuple[bytes, str]:
    bom = UTF8_BOM if data.startswith(UTF8_BOM) else b""
    body = data[len(bom) :]
    stripped = body.lstrip(b" \t\r\n")
    if len(stripped) < len(body) and stripped.startswith(b"<?xml"):
        return bom + stripped, "whitespace before the XML declaration"
    return data, ""


def _to_utf8(data: bytes, charset: str) -> tuple[bytes, str]:
    """An ASCII-compatible document as UTF-8, with a declaration that says so.

    Valid UTF-8 is UTF-8 whatever the label says: legacy text is almost never valid UTF-8 by
    chance. Otherwise the declared encoding (else the HTTP charset) decides; without a known
    one, bytes that are not UTF-8 are read as windows-1252, as browsers read unlabelled pages.
    """
    if data.isascii() or data.startswith((UTF8_BOM, *_UNICODE_BOMS)):
        return data, ""
    declared = _XML_ENCODING.match(data)
    label = declared[1].decode("ascii") if declared else charset
    codec = _codec(label)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        if codec and codec != "utf-8":
            return _declare_utf8(data.decode(codec, errors=WINDOWS_1252_FALLBACK)), ""
        said = f"declared {label} but" if label else "no encoding declared and"
        if _mostly_utf8(data):  # a few stray windows-1252 bytes in a UTF-8 document
            text = data.decode("utf-8", errors=WINDOWS_1252_FALLBACK)
            return _declare_utf8(text), f"{said} partly not UTF-8; read those bytes as windows-1252"
        text = data.decode("cp1252", errors=WINDOWS_1252_FALLBACK)
        return _declare_utf8(text), f"{said} not UTF-8; read as windows-1252"
    if codec == "utf-8" or not label:
        return data, ""
    return _declare_utf8(text), f"declared {label}, but the bytes are UTF-8"


def _mostly_utf8(data: bytes) -> bool:
    """More valid UTF-8 characters than stray high bytes ("é\xa0»" in Latin-1 is one by chance)."""
    high = len(data) - len(data.translate(None, _HIGH_BYTES))
    sequences = _UTF8_SEQUENCE.findall(data)
    return len(sequences) > high - sum(len(sequence) for sequence in sequences)


def _codec(label: str) -> str:
    """Python's codec for an encoding label; "" when unknown or not ASCII-compatible."""
    try:
        name = codecs.lookup(label).name if label else ""
    except LookupError:
        return ""
    if name.startswith(("utf-16", "utf-32")):
        return ""  # a declaration we could read as ASCII is not in UTF-16
    # Browsers read 'latin-1' and 'ascii' labels as windows-1252 (WHATWG encoding spec).
    return "cp1252" if name in ("latin-1", "iso8859-1", "ascii") else name


def _declare_utf8(text: str) -> bytes:
    return _XML_ENCODING_TEXT.sub(r"\1\2utf-8\2", text, count=1).encode("utf-8")


def _drop_risky_doctype(data: bytes, _charset: str) -> tuple[bytes, str]:
    """Remove each DOCTYPE whose entities could do more than spell a few short strings.

    Parameter, external and nested entities go, and so do literal ones past the limit. This is
    what expat would read where feedparser's own DOCTYPE clean-up misreads the prolog.
    """
    reasons: list[str] = []
    start = data.find(b"<!DOCTYPE")
    while start >= 0:  # every one: a decoy in a comment must not hide the real one
        doctype = _DOCTYPE.match(data, start)
        reason = _doctype_risk(doctype[0], data, doctype.end()) if doctype else ""
        if doctype and reason:
            data = data[:start] + data[doctype.end() :]
            reasons.append(reason)
        start = data.find(b"<!DOCTYPE", start if reason else start + 1)
    return data, "; ".join(f"DOCTYPE ignored: it {reason}" for reason in reasons)


def _doctype_risk(doctype: bytes, data: bytes, end: int) -> str:
    """Why this DOCTYPE's entities are unsafe to expand, or "" when they are safe."""
    if b"<!ENTITY" not in doctype:
        return ""
    literal = {
        match[1]: len(match[2] if match[2] is not None else match[3])
        for match in _LITERAL_ENTITY.finditer(doctype)
    }
    expansion = _expansion(literal, data, end)
    if expansion > ENTITY_EXPANSION_LIMIT:
        return f"would expand to {expansion} characters"
    if len(literal) + len(_CHARACTER_ENTITY.findall(doctype)) < doctype.count(b"<!ENTITY"):
        return "declares parameter, external or nested entities"
    return ""


def _drop_large_entities(data: bytes, _charset: str) -> tuple[bytes, str]:
    """Remove the literal entities feedparser would declare when they expand past the limit."""
    first = _FIRST_ELEMENT.search(data)
    end = first.start() if first else len(data)
    if b"<!ENTITY" not in data[:end]:  # feedparser reads declarations only before that
        return data, ""
    _version, _data, entities = replace_doctype(data)
    sizes = {name.encode(): len(value) for name, value in entities.items()}
    expansion = _expansion(sizes, data, 0)
    if expansion <= ENTITY_EXPANSION_LIMIT:
        return data, ""
    cleaned = RE_ENTITY_PATTERN.sub(b"", data[:end]) + data[end:]
    return cleaned, f"entities ignored: they would expand to {expansion} characters"


def _expansion(sizes: dict[bytes, int], data: bytes, start: int) -> int:
    """How many characters the references to these entities after `start` would spell."""
    if not sizes:
        return 0
    uses = Counter(_ENTITY_REFERENCE.findall(data, start))
    return sum(size * uses[name] for name, size in sizes.items())
