"""Bring source documents in over HTTP or from disk, politely and within limits."""

from __future__ import annotations

import asyncio
import mimetypes
import os
import zlib
from collections.abc import AsyncIterator, Callable, Iterator, Mapping, Sequence
from contextlib import aclosing
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import brotli
import httpx

from digest import __version__
from digest.errors import SourceError

USER_AGENT = f"digest/{__version__} (+https://github.com/digest)"
ACCEPT = (
    "application/rss+xml, application/atom+xml, application/feed+json, application/json;q=0.9, "
    "application/xml;q=0.9, text/xml;q=0.9, text/html;q=0.8, text/plain;q=0.7, */*;q=0.5"
)
# We inflate bodies ourselves, a piece at a time, so a compression bomb stops at the size cap
# (httpx inflates each network chunk whole).
ACCEPT_ENCODING = "gzip, deflate, br"
INFLATE_PIECE = 65_536  # bytes of output per step
_INFLATE_WBITS = {"gzip": 16 + zlib.MAX_WBITS, "x-gzip": 16 + zlib.MAX_WBITS}
_UNASKED_ENCODINGS = frozenset({"zstd", "compress", "x-compress"})
_KNOWN_ENCODINGS = ("gzip", "x-gzip", "deflate", "br")
FOLDER_SUFFIXES = frozenset({".txt", ".md", ".html", ".htm"})
LOCAL_HOST = ""  # local files share the global limit only


@dataclass(frozen=True, slots=True)
class Fetched:
    """A document's bytes and what the server said about them."""

    location: str
    data: bytes
    content_type: str
    final_url: str
    etag: str = ""
    last_modified: str = ""
    not_modified: bool = False


@dataclass(frozen=True, slots=True)
class FetchLimits:
    """How much one fetch may take (bytes, seconds, redirects) and how many run at once."""

    max_bytes: int = 10_000_000
    connect_timeout: float = 10
    read_timeout: float = 20
    total_timeout: float = 60
    max_redirects: int = 5
    per_host: int = 2
    total: int = 10


def make_client(limits: FetchLimits) -> httpx.AsyncClient:
    """An HTTP client that names itself, times out and stops after a few redirects."""
    return httpx.AsyncClient(
        headers={"User-Agent": USER_AGENT, "Accept": ACCEPT, "Accept-Encoding": ACCEPT_ENCODING},
        timeout=httpx.Timeout(
            connect=limits.connect_timeout,
            read=limits.read_timeout,
            write=limits.read_timeout,
            pool=limits.total_timeout,
        ),
        follow_redirects=True,
        max_redirects=limits.max_redirects,
        limits=httpx.Limits(max_connections=limits.total),
    )


def is_url(location: str) -> bool:
    return location.startswith(("http://", "https://"))


async def fetch_location(
    client: httpx.AsyncClient,
    location: str,
    *,
    limits: FetchLimits,
    etag: str = "",
    last_modified: str = "",
) -> Fetched:
    """The document at an http(s) URL or an absolute local path; SourceError when it fails."""
    if is_url(location):
        return await _fetch_url(client, location, limits, etag, last_modified)
    if os.path.isabs(location):
        return await asyncio.to_thread(_read_file, Path(location), limits.max_bytes)
    raise SourceError(f"{location}: not an http(s) URL or an absolute file path")


async def _fetch_url(
    client: httpx.AsyncClient, url: str, limits: FetchLimits, etag: str, last_modified: str
) -> Fetched:
    headers = {}
    if etag:
        headers["If-None-Match"] = etag
    if last_modified:
        headers["If-Modified-Since"] = last_modified
    try:
        async with asyncio.timeout(limits.total_timeout):
            return await _stream(client, url, headers, limits.max_bytes)
    except TimeoutError as error:
        raise SourceError(f"{url}: timed out after {limits.total_timeout:g} s in total") from error
    except httpx.TimeoutException as error:
        raise SourceError(f"{url}: timed out ({type(error).__name__})") from error
    except httpx.TooManyRedirects as error:
        raise SourceError(f"{url}: more than {limits.max_redirects} redirects") from error
    except httpx.ConnectError as error:
        raise SourceError(f"{url}: cannot connect ({_one_line(error)})") from error
    except (httpx.HTTPError, httpx.InvalidURL) as error:
        raise SourceError(f"{url}: {type(error).__name__}: {_one_line(error)}") from error


async def _stream(
    client: httpx.AsyncClient, url: str, headers: dict[str, str], max_bytes: int
) -> Fetched:
    async with client.stream("GET", url, headers=headers) as response:
        etag = response.headers.get("etag", "")
        last_modified = response.headers.get("last-modified", "")
        if response.status_code == httpx.codes.NOT_MODIFIED:
            return Fetched(
                location=url,
                data=b"",
                content_type=response.headers.get("content-type", ""),
                final_url=str(response.url),
                etag=etag or headers.get("If-None-Match", ""),
                last_modified=last_modified or headers.get("If-Modified-Since", ""),
                not_modified=True,
            )
        if response.status_code >= 400:
            raise SourceError(f"{url}: HTTP {response.status_code} {response.reason_phrase}")
        declared = response.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > max_bytes:
            raise SourceError(f"{url}: too large ({declared} bytes, limit {max_bytes})")
        encoding = _content_encoding(url, response.headers.get_list("content-encoding", True))
        body = bytearray()
        # Counted after decompression, so a small gzip bomb is stopped as well.
        async with aclosing(_decoded(response.aiter_raw(), encoding, url)) as pieces:
            async for piece in pieces:
                body += piece
                if len(body) > max_bytes:
                    once = " once decompressed" if encoding else ""
                    raise SourceError(f"{url}: too large{once} (over the {max_bytes}-byte limit)")
        return Fetched(
            location=url,
            data=bytes(body),
            content_type=response.headers.get("content-type", ""),
            final_url=str(response.url),
            etag=etag,
            last_modified=last_modified,
        )


def _content_encoding(url: str, values: list[str]) -> str:
    """The one compression we must undo ("gzip", "deflate", "br" or ""); unknown labels: none."""
    found = [v.strip().lower() for v in values if v.strip().lower() not in ("", "identity")]
    unasked = [value for value in found if value in _UNASKED_ENCODINGS]
    known = [value for value in found if value in _KNOWN_ENCODINGS]
    if unasked or len(known) > 1:
        raise SourceError(f"{url}: unsupported Content-Encoding {', '.join(found)}")
    return known[0] if known else ""


async def _decoded(raw: AsyncIterator[bytes], encoding: str, url: str) -> AsyncIterator[bytes]:
    """The body as sent, or decompressed in pieces of at most INFLATE_PIECE bytes."""
    if not encoding:
        async for chunk in raw:
            yield chunk
        return
    decompressor: _Decompressor | None = None
    async for chunk in raw:
        decompressor = decompressor or _decompressor(encoding, chunk)
        try:
            for piece in decompressor.pieces(chunk):
                yield piece
        except (zlib.error, brotli.error) as error:
            raise SourceError(f"{url}: cannot decompress the {encoding} body ({error})") from error
    if decompressor is not None:
        yield decompressor.rest()


class _Decompressor:
    """gzip/deflate through zlib, with each step's output capped at INFLATE_PIECE bytes."""

    def __init__(self, wbits: int) -> None:
        self.inflater = zlib.decompressobj(wbits)

    def pieces(self, data: bytes) -> Iterator[bytes]:
        while data and not self.inflater.eof:
            yield self.inflater.decompress(data, INFLATE_PIECE)
            data = self.inflater.unconsumed_tail

    def rest(self) -> bytes:
        return self.inflater.flush()


class _Unbrotli(_Decompressor):
    """brotli, with the same cap: its output buffer stops growing at INFLATE_PIECE bytes."""

    def __init__(self) -> None:
        self.brotli = brotli.Decompressor()

    def pieces(self, data: bytes) -> Iterator[bytes]:
        yield self.brotli.process(data, output_buffer_limit=INFLATE_PIECE)
        while not self.brotli.can_accept_more_data():
            yield self.brotli.process(b"", output_buffer_limit=INFLATE_PIECE)

    def rest(self) -> bytes:
        return b""


def _decompressor(encoding: str, first: bytes) -> _Decompressor:
    if encoding == "br":
        return _Unbrotli()
    return _Decompressor(_INFLATE_WBITS.get(encoding) or _deflate_wbits(first))


def _deflate_wbits(first: bytes) -> int:
    """HTTP "deflate" is zlib-wrapped, but some servers send the raw stream (RFC 9110 8.4.1.2)."""
    has_zlib_header = (
        len(first) >= 2 and first[0] & 0x0F == 8 and int.from_bytes(first[:2]) % 31 == 0
    )
    return zlib.MAX_WBITS if has_zlib_header else -zlib.MAX_WBITS


def _read_file(path: Path, max_bytes: int) -> Fetched:
    try:
        size = path.stat().st_size
        if size > max_bytes:
            raise SourceError(f"{path}: too large ({size} bytes, limit {max_bytes})")
        data = path.read_bytes()
    except FileNotFoundError as error:
        raise SourceError(f"{path}: no such file") from error
    except OSError as error:
        raise SourceError(f"{path}: cannot read ({error.strerror or error})") from error
    content_type = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
    return Fetched(location=str(path), data=data, content_type=content_type, final_url=str(path))


def _one_line(error: BaseException) -> str:
    return " ".join(str(error).split()) or type(error).__name__


def read_folder(path: Path) -> list[Path]:
    """The article files of a folder source, sorted; hidden files and folders are skipped."""
    if not path.is_dir():
        raise SourceError(f"{path}: not a folder")
    found: list[Path] = []
    for folder, subfolders, files in os.walk(path):
        subfolders[:] = [name for name in subfolders if not name.startswith(".")]
        found.extend(
            Path(folder) / name
            for name in files
            if not name.startswith(".") and Path(name).suffix.lower() in FOLDER_SUFFIXES
        )
    return sorted(found)


async def fetch_many(
    locations: Sequence[str],
    *,
    limits: FetchLimits,
    validators: Mapping[str, tuple[str, str]] | None = None,
    on_fetched: Callable[[str], None] = lambda _location: None,
) -> list[Fetched | SourceError]:
    """Fetch all locations concurrently, at most `total` at once and `per_host` per host.

    Results keep the order of `locations`; a failed source yields its SourceError in place.
    `on_fetched` hears of each location as it completes, successful or not (for progress).
    """
    validators = validators or {}
    everyone = asyncio.Semaphore(limits.total)
    per_host: dict[str, asyncio.Semaphore] = {}

    async def fetch_one(client: httpx.AsyncClient, location: str) -> Fetched | SourceError:
        host = urlsplit(location).netloc.lower() if is_url(location) else LOCAL_HOST
        host_slot = per_host.setdefault(
            host, asyncio.Semaphore(limits.per_host if host else limits.total)
        )
        etag, last_modified = validators.get(location, ("", ""))
        # The host's slot first: waiting for a busy host must not hold a global slot.
        async with host_slot, everyone:
            try:
                result: Fetched | SourceError = await fetch_location(
                    client, location, limits=limits, etag=etag, last_modified=last_modified
                )
            except SourceError as error:
                result = error
        on_fetched(location)
        return result

    async with make_client(limits) as client:
        return list(await asyncio.gather(*(fetch_one(client, loc) for loc in locations)))
