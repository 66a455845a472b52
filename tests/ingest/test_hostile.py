"""Hostile sources: oversized or compressed-bomb responses, entity bombs, wrong encodings and
markup meant to run in a reader's mail. Each gives a safe result or one clear per-source error.

The HTTP cases run end to end against a real server on 127.0.0.1; memory is measured with
tracemalloc (every thread, the test server included).
"""

from __future__ import annotations

import functools
import json
import re
import struct
import sys
import threading
import tracemalloc
import zlib
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import brotli
import pytest

from digest.collect import fetch_sources
from digest.config import parse_settings
from digest.errors import SourceError
from digest.ingest.feeds import parse_feed
from digest.ingest.fetch import FetchLimits, fetch_location, make_client
from digest.models import Article
from digest.store import Store

FIFTY_MB = 50 * 1024 * 1024
LIMITS = FetchLimits()  # the product's own limits: 10 MB a document
MEMORY_BOUND = 25_000_000  # bytes: well below the 50 MB a server tries to make us hold
PIECE = b"<item>" + b"x" * (65_536 - 6)
ITEMS = "".join(
    f"<item><title>Item {n}</title><link>https://site.example/{n}</link>"
    f"<description>Story {n} in full.</description></item>"
    for n in range(6)
)
FEED = f'<?xml version="1.0"?><rss version="2.0"><channel><title>T</title>{ITEMS}</channel></rss>'
PAGE = (
    "<!DOCTYPE html><html><head><title>Welcome</title></head><body><h1>Welcome</h1><p>"
    + "This is a shop front page about many different interesting things. " * 20
    + "</p></body></html>"
)
# What must never reach Article.html: code, event handlers, styles, script-bearing URLs.
UNSAFE_HTML = re.compile(
    r"<\s*(?:script|style|iframe|object|embed|applet|meta|link|base|form|frame|svg|math)\b"
    r"|\son[a-z]+\s*=|\sstyle\s*=|(?:href|src)\s*=\s*[\"']?\s*(?:javascript|vbscript|data):",
    re.I,
)
UNSAFE_TITLE = re.compile(r"<\s*/?\s*(?:script|style)|\son[a-z]+\s*=|javascript:", re.I)


def _png() -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = struct.pack(">I", zlib.crc32(kind + data))
        return struct.pack(">I", len(data)) + kind + data + crc

    header = struct.pack(">IIBBBBB", 1, 1, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + b"".join(
        [chunk(b"IHDR", header), chunk(b"IDAT", zlib.compress(b"\0\0\0\0")), chunk(b"IEND", b"")]
    )


@functools.cache
def _brotli_bomb() -> bytes:
    """50 MB of zeros in a few hundred bytes of brotli."""
    return brotli.compress(bytes(FIFTY_MB), quality=5)


@functools.cache
def _gzip_bomb() -> bytes:
    """50 MB of zeros in about 50 KB of gzip, made without holding the 50 MB."""
    packer = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    zeros = bytes(1 << 20)
    return b"".join([*(packer.compress(zeros) for _ in range(FIFTY_MB >> 20)), packer.flush()])


# --- a hostile server on 127.0.0.1 ----------------------------------------------------------


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    pages: dict[str, tuple[str, bytes]] = {}

    def log_message(self, format: str, *args: object) -> None:  # keep test output quiet
        pass

    def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
        if self.path == "/declared-50mb":
            self._head({"Content-Length": str(FIFTY_MB)})
            self._write_pieces(lambda piece: piece)
        elif self.path == "/chunked-50mb":
            self._head({"Transfer-Encoding": "chunked"})
            self._write_pieces(lambda piece: b"%x\r\n%s\r\n" % (len(piece), piece))
        elif self.path == "/gzip-bomb":
            bomb = _gzip_bomb()
            self._head({"Content-Encoding": "gzip", "Content-Length": str(len(bomb))})
            self.wfile.write(bomb)
        elif self.path == "/brotli-bomb":
            bomb = _brotli_bomb()
            self._head({"Content-Encoding": "br", "Content-Length": str(len(bomb))})
            self.wfile.write(bomb)
        elif self.path == "/to-a-file":
            self.send_response(302)
            self.send_header("Location", "file:///etc/passwd")
            self.send_header("Content-Length", "0")
            self.end_headers()
        elif self.path in self.pages:
            content_type, body = self.pages[self.path]
            self._head({"Content-Length": str(len(body))}, content_type)
            self.wfile.write(body)
        else:
            self._head({"Content-Length": "0"})

    def _head(self, headers: dict[str, str], content_type: str = "application/rss+xml") -> None:
        self.send_response(200)
        self.send_header("Content-Type", content_type)
        self.send_header("Connection", "close")
        for name, value in headers.items():
            self.send_header(name, value)
        self.end_headers()
        self.close_connection = True

    def _write_pieces(self, frame: Callable[[bytes], bytes]) -> None:
        for _ in range(FIFTY_MB // len(PIECE)):
            self.wfile.write(frame(PIECE))


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: object, client_address: object) -> None:
        # The client hanging up mid-body is exactly what these tests provoke.
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)  # type: ignore[arg-type]


@pytest.fixture
def server() -> Iterator[tuple[str, dict[str, tuple[str, bytes]]]]:
    """(base URL, the pages it serves by path: content type and body)."""
    pages: dict[str, tuple[str, bytes]] = {}
    handler = type("Handler", (_Handler,), {"pages": pages})
    httpd = _Server(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, args=(0.01,), daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}", pages
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(5)


# --- responses too large to hold ------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "message"),
    [
        ("/declared-50mb", f"too large ({FIFTY_MB} bytes, limit {LIMITS.max_bytes})"),
        ("/chunked-50mb", f"too large (over the {LIMITS.max_bytes}-byte limit)"),
        ("/gzip-bomb", f"too large once decompressed (over the {LIMITS.max_bytes}-byte limit)"),
        ("/brotli-bomb", f"too large once decompressed (over the {LIMITS.max_bytes}-byte limit)"),
    ],
)
async def test_a_50_mb_response_is_refused_at_the_limit_with_memory_bounded(
    server: tuple[str, dict[str, tuple[str, bytes]]], path: str, message: str
) -> None:
    base, _pages = server
    _gzip_bomb(), _brotli_bomb()  # made before measuring
    url = f"{base}{path}"
    tracemalloc.start()
    try:
        async with make_client(LIMITS) as client:
            with pytest.raises(SourceError) as raised:
                await fetch_location(client, url, limits=LIMITS)
        _current, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert str(raised.value) == f"{url}: {message}"
    assert peak < MEMORY_BOUND


async def test_a_redirect_to_a_local_file_is_not_followed(
    server: tuple[str, dict[str, tuple[str, bytes]]],
) -> None:
    url = f"{server[0]}/to-a-file"
    async with make_client(LIMITS) as client:
        with pytest.raises(SourceError, match=r"^http://127\.0\.0\.1:\d+/to-a-file: .*'file://'"):
            await fetch_location(client, url, limits=LIMITS)


# --- one bad source among good ones, end to end -----------------------------------------------


async def test_pages_images_and_oversized_bodies_fail_their_source_only(
    server: tuple[str, dict[str, tuple[str, bytes]]], tmp_path: Path
) -> None:
    base, pages = server
    pages["/feed.xml"] = ("application/rss+xml", FEED.encode())
    pages["/page.html"] = ("text/html; charset=utf-8", PAGE.encode())
    pages["/page-as-feed"] = ("application/rss+xml", PAGE.encode())
    pages["/logo.png"] = ("image/png", _png())
    pages["/png-as-feed"] = ("application/rss+xml", _png())
    # Cut inside the fifth item: four whole items remain.
    pages["/truncated"] = (
        "application/rss+xml",
        FEED[: FEED.index("<item><title>Item 4")].encode(),
    )
    sources = {
        "good": "/feed.xml",
        "page": "/page.html",
        "page-as-feed": "/page-as-feed",
        "png": "/logo.png",
        "png-as-feed": "/png-as-feed",
        "truncated": "/truncated",
        "huge": "/chunked-50mb",
    }
    toml = 'version = 1\ndatabase_url = "sqlite:///digest.db"\n' + "".join(
        f'[[sources]]\nname = "{name}"\nurl = "{base}{path}"\nkind = "feed"\n'
        for name, path in sources.items()
    )
    settings = parse_settings(toml, tmp_path / "digest.toml", {})
    store = Store.open(settings.database_url)
    try:
        report = await fetch_sources(
            settings, store, clock=lambda: datetime(2026, 11, 25, 8, tzinfo=UTC)
        )
    finally:
        store.engine.dispose()
    outcomes = {outcome.name: outcome for outcome in report.sources}
    assert (outcomes["good"].found, outcomes["good"].error) == (6, "")
    cut = outcomes["truncated"]
    assert (cut.found, cut.error) == (4, "")
    assert "no element found" in cut.defect
    expected_errors = {
        "page": 'kind = "feed", but this is an article page, not a feed',
        "page-as-feed": 'kind = "feed", but this is an article page, not a feed',
        "png": f"{base}/logo.png: binary data, not a feed, web page or text file (image/png",
        "png-as-feed": "binary data, not a feed, web page or text file (application/rss+xml,",
        "huge": f"{base}/chunked-50mb: too large (over the {LIMITS.max_bytes}-byte limit)",
    }
    for name, expected in expected_errors.items():
        error = outcomes[name].error
        assert expected in error, name
        assert "\n" not in error and outcomes[name].found == 0
    assert report.found == 10  # the good feed and what the truncated one still holds


# --- entity expansion -------------------------------------------------------------------------


def _rss(prolog: str, body: str) -> bytes:
    return (
        f'<?xml version="1.0"?>\n{prolog}<rss version="2.0"><channel><title>T</title>'
        f"<item><title>Item</title><link>https://x.example/a</link>"
        f"<description>{body}</description></item></channel></rss>"
    ).encode()


def _parse_measured(data: bytes) -> tuple[list[Article], int, str]:
    """Articles, peak traced memory in bytes, and the feed's defect (SourceError: no articles)."""
    tracemalloc.start()
    try:
        try:
            info, articles = parse_feed(data, url="https://x.example/feed", source="bomb")
            defect = info.defect
        except SourceError as error:
            articles, defect = [], str(error)
        _current, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return articles, peak, defect


LONG = "x" * 1000
USES = "&a;" * 2_000  # 6 KB of references to 1000 characters: 2 million when expanded


@pytest.mark.parametrize(
    "prolog",
    [
        f'<!DOCTYPE rss [\n<!ENTITY a "{LONG}">\n]>\n',
        f"<!DOCTYPE rss [\n<!ENTITY a '{LONG}'>\n]>\n",
        # A "]>" inside a value ends the DOCTYPE early for a naive pattern.
        f'<!DOCTYPE rss [\n<!ENTITY b "]>">\n<!ENTITY a "{LONG}">\n]>\n',
        # Markup inside a value hides the DOCTYPE from feedparser's own clean-up; expat reads it.
        f'<!DOCTYPE rss [\n<!ENTITY b "<b>">\n<!ENTITY a "{LONG}">\n]>\n',
        # feedparser also takes declarations from comments before the first element.
        f'<!--\n<!ENTITY a "{LONG}">\n-->\n<!DOCTYPE rss>\n',
        # A decoy DOCTYPE (and markup) in a comment must not hide the real one.
        f'<!-- <b> <!DOCTYPE x> -->\n<!DOCTYPE rss [\n<!ENTITY a "{LONG}">\n]>\n',
    ],
    ids=[
        "double-quoted",
        "single-quoted",
        "bracket-in-value",
        "markup-in-value",
        "in-comment",
        "decoy-in-comment",
    ],
)
def test_quadratic_entity_blowup_is_not_expanded(prolog: str) -> None:
    articles, peak, defect = _parse_measured(_rss(prolog, USES))
    assert all(len(a.text) + len(a.html) < 1_000_000 for a in articles)
    assert peak < MEMORY_BOUND
    assert "ignored" in defect


def test_billion_laughs_hidden_from_feedparser_is_not_expanded() -> None:
    laughs = "\n".join(
        ['<!ENTITY lol0 "lol">']
        + [f'<!ENTITY lol{i} "{f"&lol{i - 1};" * 10}">' for i in range(1, 9)]
    )
    prolog = f'<!DOCTYPE rss [\n<!ENTITY hide "<b>">\n{laughs}\n]>\n'
    articles, peak, defect = _parse_measured(_rss(prolog, "&lol8;"))
    assert all(len(a.text) < 1000 for a in articles)
    assert peak < MEMORY_BOUND
    assert "DOCTYPE ignored" in defect


def test_an_empty_entity_expands_to_nothing() -> None:
    data = _rss('<!DOCTYPE rss [\n<!ENTITY e "">\n]>\n', "Before&e;after")
    info, [article] = parse_feed(data, url="https://x.example/feed", source="empty")
    assert (article.text, info.defect) == ("Beforeafter", "")


def test_a_few_short_entities_still_expand(corpus: Path) -> None:
    # feedparser's conformance case: a declared literal entity used in a guid.
    data = (
        corpus / "feeds_conformance/feedparser/wellformed/rss/entity_in_doctype.xml"
    ).read_bytes()
    data = data.replace(b"<item>", b"<item><title>T</title>")
    info, [article] = parse_feed(data, url="https://x.example/feed", source="ok")
    assert article.guid == "tag:example.com,2006-05-04:/blog/"
    assert info.defect == ""


@pytest.mark.parametrize(
    "doctype",
    [
        '<!DOCTYPE rss [\n<!ENTITY xxe SYSTEM "file://{secret}">\n]>\n',
        '<!DOCTYPE rss [<!ENTITY xxe SYSTEM "file://{secret}">]>\n',
        '<!DOCTYPE rss SYSTEM "file://{secret}">\n',
        '<!DOCTYPE rss [\n<!ENTITY % x SYSTEM "file://{secret}">\n%x;\n]>\n',
        '<!DOCTYPE rss [\n<!ENTITY xxe SYSTEM "file://{secret}">\n<!ENTITY b "<b>">\n]>\n',
    ],
    ids=[
        "external-entity",
        "external-entity-one-line",
        "external-dtd",
        "parameter-entity",
        "hidden-external-entity",
    ],
)
def test_external_dtds_and_parameter_entities_are_never_read(tmp_path: Path, doctype: str) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text("TOP-SECRET-VALUE", encoding="utf-8")
    data = _rss(doctype.format(secret=secret), "About &xxe; here")
    try:
        info, articles = parse_feed(data, url="https://x.example/feed", source="xxe")
    except SourceError:
        return  # refusing the document is as safe as ignoring the entity
    everything = json.dumps([info.title, [(a.title, a.text, a.html) for a in articles]])
    assert "TOP-SECRET-VALUE" not in everything


# --- deep nesting -----------------------------------------------------------------------------


def test_deeply_nested_json_is_a_source_error_not_a_crash() -> None:
    deep = b"[" * 100_000 + b"]" * 100_000
    data = b'{"version": "https://jsonfeed.org/version/1.1", "items": ' + deep + b"}"
    with pytest.raises(SourceError, match=r"^deep: malformed feed .*nested too deeply"):
        parse_feed(data, url="https://x.example/feed.json", source="deep")


def test_deeply_nested_json_after_whole_items_keeps_those_items() -> None:
    data = (
        b'{"version": "https://jsonfeed.org/version/1.1", "items": ['
        b'{"id": "1", "title": "Kept", "url": "https://x.example/1"}, ' + b"[" * 100_000
    )
    info, articles = parse_feed(data, url="https://x.example/feed.json", source="deep")
    assert [a.title for a in articles] == ["Kept"]
    assert "nested too deeply" in info.defect


def test_deeply_nested_item_html_is_flattened_before_sanitising() -> None:
    # nh3 needs time growing with the square of the depth; libxml2 caps nesting first.
    nested = "<ul><li>" * 5000 + "deep" + "</li></ul>" * 5000
    _, [article] = parse_feed(
        _rss("", f"<![CDATA[{nested}]]>"), url="https://x.example/", source="d"
    )
    depth = deepest = 0
    for tag in re.findall(r"</?ul>", article.html):
        depth += -1 if tag.startswith("</") else 1
        deepest = max(deepest, depth)
    assert deepest <= 256
    assert article.text == "deep"  # libxml2 drops what lies past its depth cap; the words stay


# --- titles, links and HTML -------------------------------------------------------------------


def test_titles_with_line_breaks_end_up_on_one_line() -> None:
    rss = (
        _rss("", "Body")
        .replace(
            b"<title>Item</title>",
            "<title>Line one\r\nLine two&#13;&#10;three\rfour\u2028five\tsix</title>".encode(),
        )
        .replace(b"<title>T</title>", b"<title>Feed\r\nname</title>")
    )
    info, [article] = parse_feed(rss, url="https://x.example/feed", source="crlf")
    assert article.title == "Line one Line two three four five six"
    assert info.title == "Feed name"
    jsonfeed = json.dumps(
        {
            "version": "https://jsonfeed.org/version/1.1",
            "title": "Json\r\nfeed",
            "items": [
                {
                    "id": "1",
                    "url": "https://x.example/1",
                    "title": "A\r\nB\nC",
                    "tags": ["Tag\r\nBcc: x@y"],
                }
            ],
        }
    ).encode()
    info, [article] = parse_feed(jsonfeed, url="https://x.example/feed.json", source="crlf")
    assert (info.title, article.title, article.categories) == (
        "Json feed",
        "A B C",
        ("Tag Bcc: x@y",),
    )


HOSTILE_HTML = (
    '<p onclick="steal()">Body <a href="javascript:alert(1)">js</a> '
    '<a href=" JaVaScRiPt:alert(2)">js2</a> <a href="jav&#x09;ascript:alert(3)">js3</a> '
    '<a href="data:text/html;base64,PHNjcmlwdD4=">data</a> <img src="data:image/png;base64,AA"> '
    '<img src="x.png" onerror="alert(4)"> <span style="background:url(javascript:x)">styled</span>'
    "<style>p { color: red }</style><script>alert(5)</script><iframe src='https://evil'></iframe>"
    '<svg onload="alert(6)"></svg><form action="https://evil"><input name="q"></form>'
    '<object data="x.swf"></object><base href="javascript:x"><meta http-equiv="refresh">'
    '<a href="vbscript:msgbox(7)">vb</a> <a href="https://x.example/ok">ok</a></p>'
)


def test_script_handlers_styles_and_script_links_never_survive() -> None:
    hostile_title = "&lt;script&gt;alert(1)&lt;/script&gt;Safe &lt;b onclick=x()&gt;title&lt;/b&gt;"
    rss = (
        '<?xml version="1.0"?><rss version="2.0"><channel><title>T</title><item>'
        f"<title>{hostile_title}</title><link>javascript:alert(9)</link>"
        f'<enclosure url="javascript:alert(10)" type="image/png" length="1"/>'
        f"<description><![CDATA[{HOSTILE_HTML}]]></description></item></channel></rss>"
    ).encode()
    atom = (
        '<?xml version="1.0"?><feed xmlns="http://www.w3.org/2005/Atom"><title>T</title>'
        f'<entry><id>1</id><title type="text">{hostile_title}</title>'
        '<link href="data:text/html,x"/>'
        f'<content type="html">{HOSTILE_HTML.replace("&", "&amp;").replace("<", "&lt;")}'
        "</content></entry></feed>"
    ).encode()
    jsonfeed = json.dumps(
        {
            "version": "https://jsonfeed.org/version/1.1",
            "items": [
                {
                    "id": "1",
                    "url": "java\tscript:alert(8)",
                    "image": "javascript:alert(11)",
                    "title": "<script>alert(1)</script>Safe <b onclick=x()>title</b>",
                    "content_html": HOSTILE_HTML,
                }
            ],
        }
    ).encode()
    for data in (rss, atom, jsonfeed):
        _, [article] = parse_feed(data, url="https://x.example/feed", source="xss")
        assert article.title == "Safe title"
        assert (article.url, article.canonical_url, article.image) == ("", "", "")
        assert not UNSAFE_HTML.search(article.html), article.html
        assert "steal" not in article.html  # the handler's code
        assert "alert(5)" not in article.html + article.text  # the script's code
        assert '<a href="https://x.example/ok"' in article.html


def test_harmless_angle_brackets_in_a_text_title_stay() -> None:
    # A real title (netnewswire/3960.json): plain text about tags, nothing that runs.
    data = json.dumps(
        {
            "version": "https://jsonfeed.org/version/1.1",
            "items": [{"id": "1", "url": "https://x.example/1", "title": "Von <i> und <b>"}],
        }
    ).encode()
    _, [article] = parse_feed(data, url="https://x.example/feed.json", source="t")
    assert article.title == "Von <i> und <b>"


def test_relative_links_become_absolute_web_links() -> None:
    data = _rss("", "Body").replace(
        b"<link>https://x.example/a</link>", b"<link>/news/story?id=1</link>"
    )
    _, [article] = parse_feed(data, url="https://x.example/feed.xml", source="rel")
    assert article.url == "https://x.example/news/story?id=1"


def test_feedparser_sanitisation_suite_leaves_nothing_that_runs(corpus: Path) -> None:
    checked = 0
    for path in sorted((corpus / "feeds_conformance/feedparser/wellformed/sanitize").glob("*.xml")):
        try:
            info, articles = parse_feed(path.read_bytes(), url="https://x.example/", source="s")
        except SourceError:
            continue
        assert not UNSAFE_TITLE.search(info.title), path.name
        for article in articles:
            assert not UNSAFE_TITLE.search(article.title), path.name
            assert not UNSAFE_HTML.search(article.html), path.name
            assert article.url == "" or article.url.startswith(("http://", "https://")), path.name
        checked += 1
    assert checked > 700


# --- encodings --------------------------------------------------------------------------------

CP1252_TITLE = "Café “quoted” – naïve € déjà"
LATIN1_TITLE = "Café naïve déjà ©"
FRENCH_TITLE = "« doué » et « surdoué »"  # Latin-1 "é\xa0»" is valid UTF-8 by chance


def _declared(encoding: str | None, title: str, codec: str) -> bytes:
    declaration = f'<?xml version="1.0" encoding="{encoding}"?>' if encoding else ""
    return (
        f'{declaration}<rss version="2.0"><channel><title>{title}</title><item>'
        f"<title>{title}</title><link>https://x.example/a</link></item></channel></rss>"
    ).encode(codec)


@pytest.mark.parametrize(
    ("data", "title"),
    [
        (_declared("windows-1252", CP1252_TITLE, "cp1252"), CP1252_TITLE),
        (_declared("ISO-8859-1", CP1252_TITLE, "cp1252"), CP1252_TITLE),
        (_declared("ISO-8859-1", LATIN1_TITLE, "latin-1"), LATIN1_TITLE),
        (_declared(None, LATIN1_TITLE, "latin-1"), LATIN1_TITLE),
        (_declared(None, CP1252_TITLE, "cp1252"), CP1252_TITLE),
        (_declared(None, FRENCH_TITLE.replace(" »", "\xa0»"), "latin-1"), FRENCH_TITLE),
        (_declared("utf-8", CP1252_TITLE, "cp1252"), CP1252_TITLE),
        (_declared("iso-8859-1", CP1252_TITLE, "utf-8"), CP1252_TITLE),
        (_declared("us-ascii", CP1252_TITLE, "utf-8"), CP1252_TITLE),
        (_declared("no-such-encoding", CP1252_TITLE, "utf-8"), CP1252_TITLE),
        (_declared("windows-1251", "Привет", "cp1251"), "Привет"),
        (_declared(None, CP1252_TITLE, "utf-32-be"), CP1252_TITLE),
        (_declared(None, CP1252_TITLE, "utf-32-le"), CP1252_TITLE),
        # A UTF-8 document with one stray windows-1252 byte keeps the rest of its UTF-8.
        (_declared("utf-8", "naïve – “x”", "utf-8").replace("ï".encode(), b"\xef"), "naïve – “x”"),
    ],
    ids=[
        "cp1252",
        "cp1252-labelled-latin1",
        "latin1",
        "latin1-undeclared",
        "cp1252-undeclared",
        "latin1-looks-like-utf8",
        "cp1252-labelled-utf8",
        "utf8-labelled-latin1",
        "utf8-labelled-ascii",
        "utf8-labelled-unknown",
        "cp1251",
        "utf32be-without-bom",
        "utf32le-without-bom",
        "utf8-with-a-stray-byte",
    ],
)
def test_non_utf8_and_mislabelled_bodies_give_the_right_text(data: bytes, title: str) -> None:
    info, [article] = parse_feed(data, url="https://x.example/feed", source="enc")
    assert (info.title, article.title) == (title, title)


def test_the_http_charset_applies_when_the_document_declares_none() -> None:
    data = _declared(None, "Привет", "koi8-r")
    _, [article] = parse_feed(
        data, url="https://x.example/feed", source="enc", content_type="text/xml; charset=KOI8-R"
    )
    assert article.title == "Привет"


def test_a_json_feed_in_windows_1252_is_read() -> None:
    data = json.dumps(
        {"version": "https://jsonfeed.org/version/1", "items": [{"id": "1", "title": "Café €"}]},
        ensure_ascii=False,
    ).encode("cp1252")
    _, [article] = parse_feed(data, url="https://x.example/feed.json", source="enc")
    assert article.title == "Café €"
