"""Gathering sources end to end: a real HTTP server on 127.0.0.1, a real store, real parsers."""

from __future__ import annotations

import asyncio
import threading
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import sqlalchemy as sa

from digest.collect import FetchReport, fetch_sources
from digest.config import Settings, parse_settings
from digest.store import Store
from digest.tables import articles

NOW = datetime(2026, 11, 25, 8, 0, tzinfo=UTC)
STORY_WORDS = (
    "The harbour commission voted on Tuesday to rebuild the northern breakwater after two "
    "winters of storm damage left the quay exposed to the swell. Engineers told the meeting "
    "that the new wall would be built from rock armour rather than concrete blocks, and that "
    "work could start in spring if the funding from the regional council arrives on time. "
)
APPEAL = (
    "Our journalism is funded by readers like you. Please consider a donation today so "
    "that we can keep reporting on the harbour."
)


# Distinct stories, so that near-duplicate detection keeps each page's article apart.
SUBJECTS = (
    "",
    "the ferry operator announced a winter timetable with fewer crossings to the island",
    "the fishing cooperative opened a new auction hall beside the old lifeboat station",
    "the town library moved its maritime archive into the restored customs house",
    "volunteers counted seals on the sandbanks and found the colony had doubled",
    "the sailing club hosted a regatta for schools from across the county",
    "a storm surge flooded the promenade cafes and closed the coastal road overnight",
    "the lighthouse keeper's cottage will become a small museum of local shipwrecks",
)


def story(number: int) -> str:
    words = SUBJECTS[number].split()
    return f"On Monday {SUBJECTS[number]}. " + " ".join(words[::-1] + words[1::2] + words[::3])


def page(number: int) -> bytes:
    body = "".join(
        f"<p>Part {n}: {SUBJECTS[number]}; "
        + " ".join(SUBJECTS[number].split()[::-1] * n)
        + f". Paragraph {n} of story {number}.</p>"
        for n in range(1, 5)
    )
    return (
        f"<!doctype html><html lang='en'><head><title>Story {number}</title>"
        f"<link rel='canonical' href='https://harbour.example/stories/{number}'></head><body>"
        f"<nav><a href='/'>Home</a></nav>"
        f"<article><h1>Breakwater story {number}</h1>{body}</article>"
        "</body></html>"
    ).encode()


def feed_item(number: int, base: str, description: str) -> str:
    return (
        f"<item><title>Breakwater story {number}</title>"
        f"<link>{base}/stories/{number}.html</link><guid>story-{number}</guid>"
        f"<pubDate>Tue, 24 Nov 2026 0{number}:00:00 GMT</pubDate>"
        f"<description><![CDATA[{description}]]></description></item>"
    )


def rss(items: str) -> bytes:
    return (
        f'<?xml version="1.0"?><rss version="2.0"><channel><title>Harbour</title>'
        f"<link>https://harbour.example/</link>{items}</channel></rss>"
    ).encode()


class Site:
    """Files served at paths; it counts the requests each path gets."""

    def __init__(self) -> None:
        self.files: dict[str, tuple[str, bytes]] = {}
        self.requests: Counter[str] = Counter()
        self.base = ""


@pytest.fixture
def site() -> Iterator[Site]:
    state = Site()

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: object) -> None:
            pass

        def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
            state.requests[self.path] += 1
            content_type, body = state.files.get(self.path, ("text/plain", b""))
            status = 200 if self.path in state.files else 404
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.daemon_threads = True
    state.base = f"http://127.0.0.1:{httpd.server_address[1]}"
    thread = threading.Thread(target=httpd.serve_forever, args=(0.01,), daemon=True)
    thread.start()
    try:
        yield state
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(5)


def settings_for(tmp_path: Path, sources: str) -> Settings:
    text = f'version = 1\nname = "Harbour"\n{sources}\n'
    return parse_settings(text, tmp_path / "digest.toml", {})


def fetch(
    settings: Settings, store: Store, progress: list[tuple[int, int]] | None = None
) -> FetchReport:
    def heard(done: int, total: int) -> None:
        if progress is not None:
            progress.append((done, total))

    return asyncio.run(fetch_sources(settings, store, clock=lambda: NOW, on_progress=heard))


def stored_texts(store: Store) -> dict[str, str]:
    with store.engine.connect() as connection:
        rows = connection.execute(sa.select(articles.c.title, articles.c.text)).all()
    return {row.title: row.text for row in rows}


# --- full text -------------------------------------------------------------------------------


def test_full_text_source_fetches_each_teasers_page_once(
    site: Site, tmp_path: Path, store: Store
) -> None:
    site.files["/feed.xml"] = (
        "application/rss+xml",
        rss("".join(feed_item(n, site.base, "A short teaser.") for n in (1, 2, 3))),
    )
    site.files["/stories/1.html"] = ("text/html", page(1))
    site.files["/stories/2.html"] = ("text/html; charset=utf-8", page(2))  # 3 is missing
    settings = settings_for(
        tmp_path,
        f'[[sources]]\nname = "harbour"\nurl = "{site.base}/feed.xml"\nfull_text = true\n',
    )

    progress: list[tuple[int, int]] = []
    report = fetch(settings, store, progress)

    assert report.stored == 3
    # One feed, then its three pages: the bar's total grows as the pages are planned.
    assert progress[0] == (0, 1) and progress[-1] == (4, 4)
    assert [done for done, _total in progress] == sorted(done for done, _total in progress)
    texts = stored_texts(store)
    assert "Paragraph 3 of story 1." in texts["Breakwater story 1"]
    assert "Paragraph 3 of story 2." in texts["Breakwater story 2"]
    assert texts["Breakwater story 3"] == "A short teaser."  # its page failed: the item stays
    (outcome,) = report.sources
    assert not outcome.error
    assert "full text: 1 of 3 pages failed" in outcome.defect and "404" in outcome.defect
    with store.engine.connect() as connection:
        canonical = connection.execute(
            sa.select(articles.c.canonical_url).where(articles.c.title == "Breakwater story 1")
        ).scalar()
    assert canonical == "https://harbour.example/stories/1"

    fetch(settings, store)  # the items are stored now: no page is fetched again
    assert site.requests["/stories/1.html"] == 1 and site.requests["/feed.xml"] == 2


def test_without_full_text_the_feed_item_is_kept_as_it_is(
    site: Site, tmp_path: Path, store: Store
) -> None:
    site.files["/feed.xml"] = ("application/rss+xml", rss(feed_item(1, site.base, "Teaser.")))
    site.files["/stories/1.html"] = ("text/html", page(1))
    settings = settings_for(tmp_path, f'[[sources]]\nname = "h"\nurl = "{site.base}/feed.xml"\n')

    fetch(settings, store)

    assert stored_texts(store) == {"Breakwater story 1": "Teaser."}
    (stored,) = store.articles_between(NOW - timedelta(days=7), NOW)
    assert (stored.origin, stored.source) == ("h", "Harbour")  # config name; the feed's title
    assert site.requests["/stories/1.html"] == 0


def test_items_with_their_full_story_are_not_fetched_again(
    site: Site, tmp_path: Path, store: Store
) -> None:
    long_description = " ".join([STORY_WORDS] * 3)
    site.files["/feed.xml"] = (
        "application/rss+xml",
        rss(feed_item(1, site.base, f"<p>{long_description}</p>")),
    )
    settings = settings_for(
        tmp_path, f'[[sources]]\nname = "h"\nurl = "{site.base}/feed.xml"\nfull_text = true\n'
    )
    fetch(settings, store)
    assert site.requests["/stories/1.html"] == 0


def test_fetch_settings_bound_every_download(site: Site, tmp_path: Path, store: Store) -> None:
    site.files["/big.xml"] = ("application/rss+xml", rss(feed_item(1, site.base, "x" * 20_000)))
    site.files["/small.xml"] = ("application/rss+xml", rss(feed_item(2, site.base, "Small.")))
    settings = settings_for(
        tmp_path,
        "[fetch]\nmax_bytes = 10000\n"
        f'[[sources]]\nname = "big"\nurl = "{site.base}/big.xml"\n'
        f'[[sources]]\nname = "small"\nurl = "{site.base}/small.xml"\n',
    )
    big, small = fetch(settings, store).sources
    assert "too large" in big.error and "10000" in big.error
    assert small.found == 1 and not small.error


# --- learned boilerplate ---------------------------------------------------------------------


def _items_with_appeal(base: str, numbers: range) -> str:
    return "".join(
        feed_item(n, base, f"<p>{story(n)} Story {n}.</p><p>{APPEAL}</p>") for n in numbers
    )


def test_a_paragraph_recurring_in_a_sources_articles_is_dropped(
    site: Site, tmp_path: Path, store: Store
) -> None:
    site.files["/feed.xml"] = (
        "application/rss+xml",
        rss(_items_with_appeal(site.base, range(1, 5))),
    )
    settings = settings_for(tmp_path, f'[[sources]]\nname = "h"\nurl = "{site.base}/feed.xml"\n')

    fetch(settings, store)

    texts = stored_texts(store)
    assert len(texts) == 4
    assert all(APPEAL not in text and "Story" in text for text in texts.values())


def test_boilerplate_is_learned_across_fetches_not_within_one_only(
    site: Site, tmp_path: Path, store: Store
) -> None:
    settings = settings_for(tmp_path, f'[[sources]]\nname = "h"\nurl = "{site.base}/feed.xml"\n')
    site.files["/feed.xml"] = (
        "application/rss+xml",
        rss(_items_with_appeal(site.base, range(1, 3))),
    )
    fetch(settings, store)
    # Two articles are not yet "several": the appeal is still in them.
    assert all(APPEAL in text for text in stored_texts(store).values())

    # Re-fetching the same two items must not count them again.
    fetch(settings, store)
    site.files["/feed.xml"] = (
        "application/rss+xml",
        rss(_items_with_appeal(site.base, range(3, 4))),
    )
    fetch(settings, store)

    texts = stored_texts(store)
    assert APPEAL not in texts["Breakwater story 3"]
    assert "Story 3." in texts["Breakwater story 3"]


def test_boilerplate_of_one_source_is_not_held_against_another(
    site: Site, tmp_path: Path, store: Store
) -> None:
    site.files["/a.xml"] = ("application/rss+xml", rss(_items_with_appeal(site.base, range(1, 3))))
    site.files["/b.xml"] = ("application/rss+xml", rss(_items_with_appeal(site.base, range(5, 7))))
    settings = settings_for(
        tmp_path,
        f'[[sources]]\nname = "a"\nurl = "{site.base}/a.xml"\n'
        f'[[sources]]\nname = "b"\nurl = "{site.base}/b.xml"\n',
    )
    fetch(settings, store)
    assert all(APPEAL in text for text in stored_texts(store).values())
