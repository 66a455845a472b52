"""What the fuzz tests share: corpus seeds, mutations of them, and the checks on errors."""

from __future__ import annotations

import re
import tracemalloc
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

CORPUS = Path(__file__).resolve().parents[2] / ".." / "shared" / "corpus"
T = TypeVar("T")

# CI runs the suite twice close to its time limit, so each property draws few examples, and
# derandomize makes each run draw the same ones: a failure found in CI fails again locally.
settings.register_profile(
    "fuzz",
    max_examples=60,
    deadline=None,
    derandomize=True,
    database=None,
    # The web properties share one app (and its database) across examples on purpose.
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
FUZZ = settings.get_profile("fuzz")
# What no tag in sanitised HTML may be or carry: code, handlers, styles, script-bearing URLs.
UNSAFE_TAG = re.compile(
    r"^<\s*/?\s*(?:script|style|iframe|object|embed|applet|meta|link|base|form|frame|svg|math)\b"
    r"|\son[a-z]+\s*=|\sstyle\s*=|(?:href|src)\s*=\s*[\"']?\s*(?:javascript|vbscript|data):",
    re.I,
)

# Bytes that break parsers: markup, quotes, NUL, BOMs, invalid UTF-8, CR/LF, entities.
NASTY_BYTES = (
    b"<",
    b">",
    b"&",
    b'"',
    b"'",
    b"\x00",
    b"\xef\xbb\xbf",
    b"\xff\xfe",
    b"\xc3",
    b"\xed\xa0\x80",
    b"\r\n",
    b"]]>",
    b"<!--",
    b"<![CDATA[",
    b"&#0;",
    b"&#x110000;",
    b"&amp;",
    b"<!DOCTYPE x [<!ENTITY a 'aaaa'>]>",
    b"&a;",
    b"{",
    b"[",
    b"\\",
    b"\t",
    b"\xe2\x80\xa8",
)


def corpus_files(folder: str, pattern: str, limit: int, max_bytes: int = 60_000) -> list[Path]:
    """Up to `limit` small corpus files (sorted, so the seeds are the same on every run)."""
    root = CORPUS / folder
    if not root.is_dir():
        return []
    found = sorted(p for p in root.rglob(pattern) if p.is_file() and p.stat().st_size <= max_bytes)
    return found[:limit]


def require(paths: list[Path], folder: str) -> list[Path]:
    if not paths:
        pytest.skip(f"../shared/corpus/{folder} is absent")
    return paths


@st.composite
def mutated(draw: st.DrawFn, seeds: list[bytes]) -> bytes:
    """A seed document hit by a few mutations: cut short, bytes flipped, nasty bytes spliced in,
    a stretch repeated or deleted. Mostly still the document, so parsers get past the first
    line and meet the damage deep inside."""
    data = bytearray(draw(st.sampled_from(seeds)))
    for _ in range(draw(st.integers(1, 4))):
        at = draw(st.integers(0, len(data)))
        kind = draw(st.sampled_from(["cut", "flip", "splice", "repeat", "delete"]))
        if kind == "cut":
            del data[at:]
        elif kind == "flip" and at < len(data):
            data[at] = draw(st.integers(0, 255))
        elif kind == "splice":
            piece = draw(st.sampled_from(NASTY_BYTES) | st.binary(min_size=1, max_size=8))
            data[at:at] = piece
        elif kind == "repeat":
            end = min(len(data), at + draw(st.integers(1, 200)))
            data[at:at] = data[at:end] * draw(st.integers(1, 5))
        elif kind == "delete":
            del data[at : at + draw(st.integers(1, 200))]
    return bytes(data)


def assert_one_line(message: str, *, naming: str) -> None:
    """A user-facing error: one line that says which input it is about."""
    assert message.strip(), "an empty error message"
    assert "\n" not in message and "\r" not in message, f"a multi-line message: {message!r}"
    assert naming in message, f"{message!r} does not name {naming!r}"


def peak_memory(work: Callable[[], T]) -> tuple[T, int]:
    """What `work` returns and the most memory (bytes) Python allocated while it ran."""
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        result = work()
        _current, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return result, peak


def assert_safe_html(html: str) -> None:
    """Sanitised HTML: no tag in it may run code or load script (text may say anything)."""
    for tag in re.findall(r"<[^<>]*>?", html):
        assert not UNSAFE_TAG.search(tag), f"unsafe {tag!r} in {html!r}"
