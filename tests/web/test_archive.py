"""Tests for digest/web/archive.py: the public archive page and its Atom feed, through the app
`digest serve` builds, on a real SQLite file (and the store's query on PostgreSQL too)."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import urljoin

import feedparser
import lxml.html
import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient
from httpx import Response

from digest.config import Settings, parse_settings
from digest.models import Article, Issue, Section, article_id
from digest.store import PublishedIssue, Store
from digest.tables import issues
from digest.web.archive import PAGE_SIZE, ArchiveDigest, archive_of, entry_id
from digest.web.serving import public_app
from tests.web.public_site import TEST_RATE_LIMIT, Clock

SECRET = "archive-test-secret"
BASE_URL = "https://news.example.org"
BUILT = datetime(2025, 3, 3, 8, 0, tzinfo=UTC)
CONFIG = f"""
version = 1
name = "Example News"
base_url = "{BASE_URL}"

[mail]
url = "file://outbox"
sender = "Example News <news@example.org>"

[[digests]]
name = "weekly"
title = "The Weekly"

[[digests]]
name = "daily"
title = "Die Tageszeitung"
locale = "de"
timezone = "Pacific/Auckland"
"""
HOSTILE = "<script>alert(1)</script> ]]> \u202eevil\u202c \x00\x0b\x1b\x7f & done"


@dataclass(frozen=True)
class ArchiveSite:
    client: TestClient
    store: Store
    settings: Settings

    def publish(
        self,
        digest: str = "weekly",
        *,
        status: str = "sent",
        created: datetime = BUILT,
        sections: Sequence[tuple[str, int]] = (("Science", 2), ("Sport", 1)),
        subject: str = "",
    ) -> int:
        """Store an issue of `digest` with `sections` (label, story count) and give it `status`."""
        key = f"{digest}-{created:%Y%m%dT%H%M%z}-{status}"  # period keys are at most 40 long
        built = tuple(
            Section(label, tuple(story(f"{key}-{label}-{n}") for n in range(count)))
            for label, count in sections
        )
        self.store.save_articles([a for s in built for a in s.articles], now=created)
        issue, _ = self.store.save_issue(Issue(digest, key, digest.title(), created, built))
        assert issue.id is not None
        with self.store.transaction() as connection:
            connection.execute(
                sa.update(issues)
                .where(issues.c.id == issue.id)
                .values(subject=subject, status=status, updated=created + timedelta(minutes=5))
            )
        return issue.id


def story(key: str) -> Article:
    url = f"https://source.example.net/{key}"
    return Article(article_id(url), url, f"Story {key}", "Text.", "Source", BUILT)


@pytest.fixture
def archive(tmp_path: Path) -> Iterator[ArchiveSite]:
    path = tmp_path / "digest.toml"
    path.write_text(CONFIG, encoding="utf-8")
    settings = parse_settings(CONFIG, path, {"DIGEST_SECRET_KEY": SECRET})
    store = Store.open(settings.database_url)
    app = public_app(settings, store, clock=Clock(), rate_limit=TEST_RATE_LIMIT, environ={})
    with TestClient(app, follow_redirects=False) as client:
        yield ArchiveSite(client, store, settings)
    store.engine.dispose()


def issue_links(page: Response) -> list[str]:
    """The absolute URLs the archive page links its issues with, in page order."""
    document = lxml.html.fromstring(page.text)
    base = str(page.url)
    return [urljoin(base, href) for href in document.xpath("//ul[@class='issues']//a/@href")]


def issue_lines(page: Response) -> list[str]:
    """Each issue's line on the archive page, as a reader sees it."""
    items = lxml.html.fromstring(page.text).xpath("//ul[@class='issues']/li")
    return [" ".join(item.text_content().split()) for item in items]


def issue_url(issue_id: int) -> str:
    return f"http://testserver/issues/{issue_id}"


def feed(client: TestClient, path: str = "/archive.atom") -> feedparser.FeedParserDict:
    answer = client.get(path)
    assert answer.status_code == 200
    assert answer.headers["content-type"] == "application/atom+xml; charset=utf-8"
    ET.fromstring(answer.content)  # well-formed XML, or this raises
    parsed = feedparser.parse(answer.content)
    assert not parsed.bozo, parsed.get("bozo_exception")
    assert parsed.version == "atom10"
    return parsed


# --- the page ----------------------------------------------------------------------------


def test_archive_lists_only_issues_that_went_out_newest_first(archive: ArchiveSite) -> None:
    hidden = [archive.publish(status=s) for s in ("draft", "approved", "cancelled")]
    sending = archive.publish(status="sending", created=BUILT + timedelta(days=7))
    sent = archive.publish(created=BUILT + timedelta(days=14))
    newest = archive.publish(created=BUILT + timedelta(days=21))

    page = archive.client.get("/archive")

    assert page.status_code == 200
    assert issue_links(page) == [issue_url(newest), issue_url(sent), issue_url(sending)]
    for issue_id in hidden:
        assert f"issues/{issue_id}" not in page.text
        assert archive.client.get(f"/issues/{issue_id}").status_code == 404


def test_each_line_shows_number_headline_date_and_stories(archive: ArchiveSite) -> None:
    first = archive.publish()
    archive.publish(created=BUILT + timedelta(days=7), subject="Rail budget passes")

    page = archive.client.get("/archive/weekly")

    # No subject set: the headline is what the email's subject said, title and day.
    assert issue_lines(page) == [
        "Rail budget passes No. 2 · Mar 10, 2025 · 3 stories: Science · Sport",
        "Weekly — March 3, 2025 No. 1 · Mar 3, 2025 · 3 stories: Science · Sport",
    ]
    assert '<time datetime="2025-03-03" lang="en">' in page.text
    assert issue_links(page)[1] == issue_url(first)


def test_dates_are_in_the_digest_s_language_and_time_zone(archive: ArchiveSite) -> None:
    # 20:00 UTC on 3 March is already 4 March in Auckland.
    archive.publish("daily", created=datetime(2025, 3, 3, 20, 0, tzinfo=UTC))

    page = archive.client.get("/archive/daily")

    assert '<time datetime="2025-03-04" lang="de">04.03.2025</time>' in page.text
    assert "Daily — 4. März 2025" in page.text


def test_the_whole_archive_names_each_issue_s_digest_and_links_each_digest_s_own(
    archive: ArchiveSite,
) -> None:
    weekly = archive.publish("weekly")
    daily = archive.publish("daily", created=BUILT + timedelta(days=1))

    everything = archive.client.get("/archive")
    only_daily = archive.client.get("/archive/daily")

    assert issue_links(everything) == [issue_url(daily), issue_url(weekly)]
    assert [line.split(" · No.")[0] for line in issue_lines(everything)] == [
        "Daily — 4. März 2025 Die Tageszeitung",
        "Weekly — March 3, 2025 The Weekly",
    ]
    assert issue_links(only_daily) == [issue_url(daily)]
    assert issue_lines(only_daily)[0].startswith("Daily — 4. März 2025 No. 1 · ")
    nav = lxml.html.fromstring(only_daily.text).xpath("//nav[@aria-label='Archives']//a/@href")
    assert [urljoin(str(only_daily.url), href) for href in nav] == [
        "http://testserver/archive",
        "http://testserver/archive/weekly",
    ]


def test_an_unknown_digest_has_no_archive_and_is_pointed_to_the_whole_one(
    archive: ArchiveSite,
) -> None:
    for path in ("/archive/monthly", "/archive/monthly.atom"):
        answer = archive.client.get(path)
        back = lxml.html.fromstring(answer.text).xpath("//main//a/@href")
        assert answer.status_code == 404
        assert [urljoin(str(answer.url), href) for href in back] == ["http://testserver/archive"]


def test_pages_hold_fifty_issues_and_past_the_last_is_not_found(archive: ArchiveSite) -> None:
    ids = [
        archive.publish(created=BUILT + timedelta(days=n), sections=(("News", 1),))
        for n in range(PAGE_SIZE * 2 + 3)
    ]
    newest_first = [issue_url(issue_id) for issue_id in reversed(ids)]

    first = archive.client.get("/archive")
    third = archive.client.get("/archive?page=3")

    assert issue_links(first) == newest_first[:PAGE_SIZE]
    assert issue_links(archive.client.get("/archive?page=2")) == newest_first[PAGE_SIZE:-3]
    assert issue_links(third) == newest_first[-3:]
    older = lxml.html.fromstring(first.text).xpath("//a[@rel='next']/@href")
    newer = lxml.html.fromstring(third.text).xpath("//a[@rel='prev']/@href")
    assert urljoin(str(first.url), older[0]) == "http://testserver/archive?page=2"
    assert urljoin(str(third.url), newer[0]) == "http://testserver/archive?page=2"
    assert "Page 3 of 3" in third.text
    for past in ("4", "0", "-1", "two", "1e3", ""):
        missing = archive.client.get(f"/archive/weekly?page={past}")
        back = lxml.html.fromstring(missing.text).xpath("//main//a/@href")
        assert missing.status_code == 404, past
        assert urljoin(str(missing.url), back[0]) == "http://testserver/archive/weekly"
    assert archive.client.get("/archive?page=4").status_code == 404


def test_an_empty_archive_says_so_and_has_only_its_first_page(archive: ArchiveSite) -> None:
    archive.publish(status="draft")

    page = archive.client.get("/archive")

    assert page.status_code == 200
    assert "No issue has been sent yet." in page.text
    assert archive.client.get("/archive?page=2").status_code == 404
    assert feed(archive.client).entries == []


def test_the_page_is_cacheable_script_free_and_links_its_feed(archive: ArchiveSite) -> None:
    archive.publish()

    for path, feed_url in (
        ("/archive", "http://testserver/archive.atom"),
        ("/archive/daily", "http://testserver/archive/daily.atom"),
    ):
        page = archive.client.get(path)
        document = lxml.html.fromstring(page.text)
        feeds = document.xpath("//head/link[@rel='alternate'][@type='application/atom+xml']")
        assert [urljoin(str(page.url), link.get("href")) for link in feeds] == [feed_url]
        assert page.headers["cache-control"] == "public, max-age=300"
        assert "script-src" not in page.headers["content-security-policy"]
        assert "default-src 'none'" in page.headers["content-security-policy"]
        assert not document.xpath("//script") and "<script" not in page.text


# --- the feed ----------------------------------------------------------------------------


def test_the_feed_is_atom_with_one_entry_per_issue_that_went_out(archive: ArchiveSite) -> None:
    archive.publish(status="draft")
    archive.publish(status="cancelled")
    first = archive.publish(sections=(("Science", 2), ("Culture & Arts", 1)))
    second = archive.publish(created=BUILT + timedelta(days=7), subject="Rail budget passes")

    parsed = feed(archive.client)

    assert parsed.feed.title == "Example News"
    assert parsed.feed.id == f"{BASE_URL}/archive.atom"
    assert parsed.feed.author == "Example News"
    assert parsed.feed.updated == "2025-03-10T08:05:00Z"
    links = {link.rel: link.href for link in parsed.feed.links}
    assert links == {"self": f"{BASE_URL}/archive.atom", "alternate": f"{BASE_URL}/archive"}
    assert [entry.link for entry in parsed.entries] == [
        f"{BASE_URL}/issues/{second}",
        f"{BASE_URL}/issues/{first}",
    ]
    latest, oldest = parsed.entries
    assert latest.id == f"tag:news.example.org,2025-03-10:/issues/{second}"
    assert latest.title == "Rail budget passes"
    assert oldest.title == "Weekly — March 3, 2025"
    assert oldest.summary == "3 stories: Science · Culture & Arts"
    assert oldest.published == "2025-03-03T08:00:00Z"
    assert oldest.updated == "2025-03-03T08:05:00Z"
    assert oldest.tags[0].term == "weekly"


def test_an_entry_in_another_language_than_the_feed_says_so(archive: ArchiveSite) -> None:
    archive.publish("weekly")
    archive.publish("daily", created=BUILT + timedelta(days=1))

    parsed = feed(archive.client)

    assert parsed.feed.language == "en"
    assert [entry.title_detail.language for entry in parsed.entries] == ["de", "en"]


def test_a_feed_reader_holding_the_latest_feed_gets_a_bodiless_304(archive: ArchiveSite) -> None:
    archive.publish()
    first = archive.client.get("/archive.atom")
    etag = first.headers["etag"]

    again = archive.client.get("/archive.atom", headers={"If-None-Match": etag})
    proxied = archive.client.get("/archive.atom", headers={"If-None-Match": f'"x", W/{etag}'})
    archive.publish(created=BUILT + timedelta(days=7))
    changed = archive.client.get("/archive.atom", headers={"If-None-Match": etag})

    assert (again.status_code, again.content, again.headers["etag"]) == (304, b"", etag)
    assert proxied.status_code == 304
    assert changed.status_code == 200 and changed.headers["etag"] != etag
    assert len(feedparser.parse(changed.content).entries) == 2


def test_each_digest_has_its_own_feed_in_its_language(archive: ArchiveSite) -> None:
    archive.publish("weekly")
    daily = archive.publish("daily")

    parsed = feed(archive.client, "/archive/daily.atom")

    assert parsed.feed.title == "Die Tageszeitung"
    assert parsed.feed.id == f"{BASE_URL}/archive/daily.atom"
    assert parsed.feed.language == "de"
    assert [entry.link for entry in parsed.entries] == [f"{BASE_URL}/issues/{daily}"]


def test_hostile_headlines_and_labels_are_escaped_or_removed(archive: ArchiveSite) -> None:
    # PostgreSQL stores no NUL at all (the PostgreSQL pass, tests/conftest.py); SQLite does.
    on_sqlite = archive.store.engine.dialect.name == "sqlite"
    hostile = HOSTILE if on_sqlite else HOSTILE.replace("\x00", "")
    archive.publish(subject=hostile, sections=((hostile, 1), ("Sport", 1)))
    cleaned = "<script>alert(1)</script> ]]> evil & done"

    answer = archive.client.get("/archive.atom")
    parsed = feed(archive.client)
    page = archive.client.get("/archive")

    for raw in (answer.content, page.content):
        assert b"<script" not in raw
        for character in "\x00\x0b\x1b\x7f\u202e\u202c":
            assert character.encode() not in raw
    entry = parsed.entries[0]
    assert entry.title == cleaned
    assert entry.summary == f"2 stories: {cleaned} · Sport"
    assert "&lt;script&gt;alert(1)&lt;/script&gt; ]]&gt; evil &amp; done" in page.text
    assert not lxml.html.fromstring(page.text).xpath("//script")


def test_entry_ids_keep_the_base_url_s_path_and_the_day_the_issue_was_built() -> None:
    issue = archive_row(id=7, created=datetime(2025, 3, 3, 23, 30, tzinfo=UTC))

    assert (
        entry_id("https://example.org/news", issue) == "tag:example.org,2025-03-03:/news/issues/7"
    )
    assert entry_id("http://localhost:8000", issue) == "tag:localhost,2025-03-03:/issues/7"


def archive_row(**fields: object) -> PublishedIssue:
    values: dict[str, object] = {
        "id": 1,
        "digest": "weekly",
        "number": 1,
        "title": "The Weekly",
        "subject": "",
        "created": BUILT,
        "updated": BUILT,
        "sections": (),
        "stories": 0,
    }
    values.update(fields)
    return PublishedIssue(**values)  # type: ignore[arg-type]


# --- the store's query, on SQLite and PostgreSQL -----------------------------------------


def test_published_issues_pages_newest_first_per_digest(store: Store) -> None:
    def publish(digest: str, status: str, day: int, sections: tuple[tuple[str, int], ...]) -> int:
        created = BUILT + timedelta(days=day)
        key = f"{digest}-{day}"
        built = tuple(
            Section(label, tuple(story(f"{key}-{label}-{n}") for n in range(count)))
            for label, count in sections
        )
        store.save_articles([a for s in built for a in s.articles], now=created)
        issue, _ = store.save_issue(Issue(digest, key, digest.title(), created, built))
        assert issue.id is not None
        store.set_issue_status(issue.id, status, now=created)
        return issue.id

    one = publish("weekly", "sent", 0, (("Sport", 1), ("Science", 2)))
    publish("weekly", "draft", 1, (("Sport", 1),))
    two = publish("daily", "sending", 2, ())
    three = publish("weekly", "sent", 3, (("Science", 1),))

    everything, total = store.published_issues(["weekly", "daily"], offset=0, limit=2)
    rest, _ = store.published_issues(["weekly", "daily"], offset=2, limit=2)
    weekly, weekly_total = store.published_issues(["weekly"])

    assert ([i.id for i in everything], [i.id for i in rest], total) == ([three, two], [one], 3)
    assert ([i.id for i in weekly], weekly_total) == ([three, one], 2)
    oldest = rest[0]
    assert (oldest.sections, oldest.stories, oldest.number) == (("Sport", "Science"), 3, 1)
    assert (everything[1].sections, everything[1].stories) == ((), 0)
    assert store.published_issues([]) == ([], 0)


def test_archive_digests_come_from_the_settings_in_file_order(archive: ArchiveSite) -> None:
    digests = archive_of(archive.settings, archive.store).digests

    assert digests == (
        ArchiveDigest("weekly", "The Weekly", "en", "UTC"),
        ArchiveDigest("daily", "Die Tageszeitung", "de", "Pacific/Auckland"),
    )


def test_an_empty_feed_keeps_its_etag_as_time_passes(tmp_path: Path) -> None:
    path = tmp_path / "digest.toml"
    path.write_text(CONFIG, encoding="utf-8")
    settings = parse_settings(CONFIG, path, {"DIGEST_SECRET_KEY": SECRET})
    store = Store.open(settings.database_url)
    clock = Clock()
    app = public_app(settings, store, clock=clock, rate_limit=TEST_RATE_LIMIT, environ={})
    try:
        with TestClient(app, follow_redirects=False) as client:
            first = client.get("/archive.atom")
            clock.advance(hours=1)
            later = client.get("/archive.atom", headers={"If-None-Match": first.headers["etag"]})
    finally:
        store.engine.dispose()
    assert first.status_code == 200 and feedparser.parse(first.content).entries == []
    assert later.status_code == 304
