"""Tests for digest/ingest/fetch.py against a real HTTP server on 127.0.0.1."""

from __future__ import annotations

import gzip
import socket
import sys
import threading
import time
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import brotli
import httpx
import pytest

from digest import __version__
from digest.errors import SourceError
from digest.ingest.fetch import (
    Fetched,
    FetchLimits,
    fetch_location,
    fetch_many,
    make_client,
    read_folder,
)

pytestmark = pytest.mark.nodb  # the PostgreSQL pass skips it

FEED = b'<?xml version="1.0"?><rss version="2.0"><channel><title>T</title></channel></rss>'
ETAG = '"feed-v1"'
LAST_MODIFIED = "Tue, 15 Oct 2024 12:00:00 GMT"
SHORT = FetchLimits(max_bytes=1000, connect_timeout=1, read_timeout=0.3, total_timeout=5)


@dataclass
class ServerState:
    """What the test server saw, for assertions."""

    base: str = ""
    user_agents: list[str] = field(default_factory=list)
    accept_encodings: list[str] = field(default_factory=list)
    active: int = 0
    most_active: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)
    release_hang: threading.Event = field(default_factory=threading.Event)


def _handler(state: ServerState) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: object) -> None:  # keep test output quiet
            pass

        def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
            state.user_agents.append(self.headers.get("User-Agent", ""))
            state.accept_encodings.append(self.headers.get("Accept-Encoding", ""))
            route = self.path.split("?")[0]
            if route == "/feed.xml":
                self._feed()
            elif route == "/redirect":
                self._reply(302, b"", {"Location": "/feed.xml"})
            elif route == "/loop":
                self._reply(302, b"", {"Location": "/loop"})
            elif route == "/big-declared":
                self._reply(200, b"x" * 5000)
            elif route == "/big-streamed":
                self._stream_without_length(b"y" * 5000)
            elif route == "/gzip":
                self._reply(200, gzip.compress(FEED), {"Content-Encoding": "gzip"})
            elif route == "/x-gzip":
                self._reply(200, gzip.compress(FEED), {"Content-Encoding": "x-gzip"})
            elif route == "/deflate":
                self._reply(200, zlib.compress(FEED), {"Content-Encoding": "deflate"})
            elif route == "/raw-deflate":
                raw = zlib.compressobj(wbits=-zlib.MAX_WBITS)
                body = raw.compress(FEED) + raw.flush()
                self._reply(200, body, {"Content-Encoding": "deflate"})
            elif route == "/mislabelled-encoding":
                self._reply(200, FEED, {"Content-Encoding": "utf-8"})
            elif route == "/brotli":
                self._reply(200, brotli.compress(FEED), {"Content-Encoding": "br"})
            elif route == "/corrupt-brotli":
                self._reply(200, b"\xff" * 20, {"Content-Encoding": "br"})
            elif route == "/zstd":
                self._reply(200, b"(\xb5/\xfd", {"Content-Encoding": "zstd"})
            elif route == "/corrupt-gzip":
                self._reply(
                    200, gzip.compress(FEED)[:10] + b"garbage!", {"Content-Encoding": "gzip"}
                )
            elif route == "/hang":
                state.release_hang.wait(5)
                self._reply(200, b"late")
            elif route.startswith("/slow/"):
                self._slow()
            else:
                self._reply(404, b"not here")

        def _feed(self) -> None:
            if self.headers.get("If-None-Match") == ETAG:
                self._reply(304, b"", {"ETag": ETAG})
                return
            headers = {"ETag": ETAG, "Last-Modified": LAST_MODIFIED}
            self._reply(200, FEED, headers, content_type="application/rss+xml")

        def _slow(self) -> None:
            with state.lock:
                state.active += 1
                state.most_active = max(state.most_active, state.active)
            time.sleep(0.1)
            with state.lock:
                state.active -= 1
            self._reply(200, self.path.encode())

        def _reply(
            self,
            status: int,
            body: bytes,
            headers: dict[str, str] | None = None,
            content_type: str = "text/plain",
        ) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            for name, value in (headers or {}).items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(body)

        def _stream_without_length(self, body: bytes) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Connection", "close")
            self.end_headers()
            self.close_connection = True
            for start in range(0, len(body), 500):
                self.wfile.write(body[start : start + 500])

    return Handler


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: object, client_address: object) -> None:
        # A client that gives up mid-body (size cap, timeout) is what these tests provoke.
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)  # type: ignore[arg-type]


@pytest.fixture
def server() -> Iterator[ServerState]:
    state = ServerState()
    httpd = _Server(("127.0.0.1", 0), _handler(state))
    state.base = f"http://127.0.0.1:{httpd.server_address[1]}"
    thread = threading.Thread(target=httpd.serve_forever, args=(0.01,), daemon=True)
    thread.start()
    try:
        yield state
    finally:
        state.release_hang.set()
        httpd.shutdown()
        httpd.server_close()
        thread.join(5)


async def _fetch(location: str, limits: FetchLimits = SHORT, **validators: str) -> Fetched:
    async with make_client(limits) as client:
        return await fetch_location(client, location, limits=limits, **validators)


async def test_200_returns_body_type_and_validators(server: ServerState) -> None:
    fetched = await _fetch(f"{server.base}/feed.xml")
    assert fetched.data == FEED
    assert fetched.content_type == "application/rss+xml"
    assert (fetched.etag, fetched.last_modified) == (ETAG, LAST_MODIFIED)
    assert not fetched.not_modified
    assert server.user_agents == [f"digest/{__version__} (+https://github.com/digest)"]


async def test_conditional_get_with_matching_etag_is_not_modified(server: ServerState) -> None:
    fetched = await _fetch(f"{server.base}/feed.xml", etag=ETAG, last_modified=LAST_MODIFIED)
    assert fetched.not_modified
    assert fetched.data == b""
    assert fetched.etag == ETAG


async def test_redirect_is_followed_and_final_url_reported(server: ServerState) -> None:
    fetched = await _fetch(f"{server.base}/redirect")
    assert fetched.data == FEED
    assert fetched.final_url == f"{server.base}/feed.xml"
    assert fetched.location == f"{server.base}/redirect"


@pytest.mark.parametrize("path", ["/gzip", "/x-gzip", "/deflate", "/raw-deflate", "/brotli"])
async def test_compressed_bodies_are_inflated(server: ServerState, path: str) -> None:
    assert (await _fetch(f"{server.base}{path}")).data == FEED
    assert server.accept_encodings == ["gzip, deflate, br"]


async def test_an_unknown_content_encoding_label_means_none(server: ServerState) -> None:
    assert (await _fetch(f"{server.base}/mislabelled-encoding")).data == FEED


@pytest.mark.parametrize(
    ("path", "message"),
    [
        ("/missing", "HTTP 404 Not Found"),
        ("/big-declared", "too large (5000 bytes, limit 1000)"),
        ("/big-streamed", "too large (over the 1000-byte limit)"),
        ("/zstd", "unsupported Content-Encoding zstd"),
        ("/loop", "more than 5 redirects"),
        ("/hang", "timed out (ReadTimeout)"),
    ],
)
async def test_failures_become_one_line_source_errors(
    server: ServerState, path: str, message: str
) -> None:
    location = f"{server.base}{path}"
    with pytest.raises(SourceError) as raised:
        await _fetch(location)
    assert str(raised.value) == f"{location}: {message}"


@pytest.mark.parametrize(
    ("path", "message"),
    [("/corrupt-gzip", r"the gzip body \(Error -3 "), ("/corrupt-brotli", r"the br body \(")],
)
async def test_a_corrupt_compressed_body_is_a_source_error(
    server: ServerState, path: str, message: str
) -> None:
    with pytest.raises(SourceError, match=rf": cannot decompress {message}"):
        await _fetch(f"{server.base}{path}")


async def test_total_timeout_bounds_a_slow_server(server: ServerState) -> None:
    limits = FetchLimits(read_timeout=5, total_timeout=0.3)
    started = time.monotonic()
    with pytest.raises(SourceError, match=r": timed out after 0\.3 s in total$"):
        await _fetch(f"{server.base}/hang", limits)
    assert time.monotonic() - started < 2


async def test_refused_connection_is_a_source_error() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with pytest.raises(SourceError, match=rf"^http://127\.0\.0\.1:{port}/x: cannot connect"):
        await _fetch(f"http://127.0.0.1:{port}/x")


async def test_local_file_is_read_with_a_guessed_type(tmp_path: Path) -> None:
    page = tmp_path / "story.html"
    page.write_bytes(b"<html><body><p>Hi</p></body></html>")
    fetched = await _fetch(str(page))
    assert fetched.data == page.read_bytes()
    assert fetched.content_type == "text/html"
    assert fetched.final_url == str(page)


async def test_local_file_problems_are_source_errors(tmp_path: Path) -> None:
    with pytest.raises(SourceError, match=r"missing\.txt: no such file$"):
        await _fetch(str(tmp_path / "missing.txt"))
    big = tmp_path / "big.txt"
    big.write_bytes(b"z" * 2000)
    with pytest.raises(SourceError, match=r"big\.txt: too large \(2000 bytes, limit 1000\)$"):
        await _fetch(str(big))
    with pytest.raises(SourceError, match=r"^relative/path\.txt: not an http\(s\) URL"):
        await _fetch("relative/path.txt")


async def test_fetch_many_keeps_order_and_isolates_failures(
    server: ServerState, tmp_path: Path
) -> None:
    note = tmp_path / "note.txt"
    note.write_text("Title\n\nBody", encoding="utf-8")
    locations = [f"{server.base}/feed.xml", f"{server.base}/missing", str(note), "nowhere"]
    results = await fetch_many(locations, limits=SHORT)
    assert [type(r).__name__ for r in results] == [
        "Fetched",
        "SourceError",
        "Fetched",
        "SourceError",
    ]
    assert isinstance(results[0], Fetched) and results[0].data == FEED
    assert isinstance(results[2], Fetched) and results[2].data == note.read_bytes()
    assert str(results[1]).startswith(f"{server.base}/missing: HTTP 404")


async def test_fetch_many_sends_validators_per_location(server: ServerState) -> None:
    feed = f"{server.base}/feed.xml"
    [result] = await fetch_many([feed], limits=SHORT, validators={feed: (ETAG, "")})
    assert isinstance(result, Fetched) and result.not_modified


async def test_fetch_many_limits_requests_per_host(server: ServerState) -> None:
    limits = FetchLimits(per_host=2, total=10, read_timeout=5)
    locations = [f"{server.base}/slow/{n}" for n in range(6)]
    started = time.monotonic()
    results = await fetch_many(locations, limits=limits)
    assert [r.data for r in results if isinstance(r, Fetched)] == [
        f"/slow/{n}".encode() for n in range(6)
    ]
    assert server.most_active == 2
    assert time.monotonic() - started >= 0.3  # three rounds of two


async def test_make_client_caps_redirects_and_names_itself() -> None:
    async with make_client(FetchLimits(max_redirects=3)) as client:
        assert client.max_redirects == 3
        assert client.follow_redirects
        assert client.headers["User-Agent"].startswith("digest/")
        assert isinstance(client.timeout, httpx.Timeout) and client.timeout.read == 20


def test_read_folder_lists_article_files_sorted_and_skips_hidden(tmp_path: Path) -> None:
    for relative in (
        "b.md",
        "a.txt",
        "sub/c.HTML",
        "sub/d.htm",
        "notes.pdf",
        ".hidden.txt",
        ".git/e.txt",
        "sub/.cache/f.md",
    ):
        path = tmp_path / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("x", encoding="utf-8")
    assert [p.relative_to(tmp_path).as_posix() for p in read_folder(tmp_path)] == [
        "a.txt",
        "b.md",
        "sub/c.HTML",
        "sub/d.htm",
    ]


def test_read_folder_of_a_missing_folder_is_a_source_error(tmp_path: Path) -> None:
    with pytest.raises(SourceError, match="not a folder$"):
        read_folder(tmp_path / "absent")
