"""A small real project for the scheduler's tests: digest.toml, a feed file, subscribers."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from email import message_from_bytes
from pathlib import Path

import pytest

from digest.config import Settings, load_settings
from digest.models import Article
from digest.store import Store
from subscribers.service import add_subscriber, ensure_list

READERS = ("ada@example.org", "bob@example.org", "cy@example.net")
SECRET = "test-secret-key-for-the-scheduler-tests"


@dataclass
class Project:
    root: Path
    config: Path
    outbox: Path
    database_url: str

    def settings(self) -> Settings:
        return load_settings(self.config, {"DIGEST_SECRET_KEY": SECRET})

    def env(self) -> dict[str, str]:
        return {"DIGEST_SECRET_KEY": SECRET, "DIGEST_DATABASE_URL": self.database_url}

    def mail(self) -> list[tuple[str, str]]:
        """(recipient, subject) of every message the file backend wrote."""
        found = []
        for path in sorted(self.outbox.glob("*.eml")):
            message = message_from_bytes(path.read_bytes())
            found.append((str(message["To"]), str(message["Subject"])))
        return found

    def mail_to(self, address: str) -> list[str]:
        return [subject for to, subject in self.mail() if to == address]


def write_feed(path: Path, published: datetime, count: int = 3) -> None:
    items = "".join(
        f"<item><title>Harbour story number {n}</title>"
        f"<link>https://news.example.org/story-{n}</link>"
        f"<pubDate>{published:%a, %d %b %Y %H:%M:%S} GMT</pubDate>"
        f"<description>The harbour council met about ferry number {n} and its timetable."
        f"</description></item>"
        for n in range(count)
    )
    path.write_text(
        '<?xml version="1.0"?><rss version="2.0"><channel><title>Courier</title>'
        f"<link>https://news.example.org/</link>{items}</channel></rss>",
        encoding="utf-8",
    )


MakeProject = Callable[..., Project]


@pytest.fixture
def opened() -> Iterator[list[Store]]:
    """Stores a test opens; disposed of after it."""
    stores: list[Store] = []
    yield stores
    for store in stores:
        store.engine.dispose()


@pytest.fixture
def make_project(tmp_path: Path) -> MakeProject:
    """A project on `database_url` whose one digest has the given settings, readers subscribed."""

    def make(database_url: str, *, feed_time: datetime | None = None, **digest: object) -> Project:
        root = tmp_path / "project"
        root.mkdir(exist_ok=True)
        options = {
            "name": "weekly",
            "title": "The Weekly",
            "schedule": "0 8 * * 1",
            "timezone": "Europe/Berlin",
            **digest,
        }
        lines = [f"{key} = {_toml(value)}" for key, value in options.items()]
        config = root / "digest.toml"
        config.write_text(
            "version = 1\n"
            'base_url = "https://digest.example.org"\n'
            f'database_url = "{database_url}"\n'
            '[mail]\nurl = "file://outbox"\nsender = "The Weekly <weekly@example.org>"\n'
            '[[sources]]\nname = "courier"\nurl = "feed.xml"\nkind = "feed"\nevery = 30\n'
            "[[digests]]\n" + "\n".join(lines) + "\n",
            encoding="utf-8",
        )
        if feed_time is not None:
            write_feed(root / "feed.xml", feed_time)
        project = Project(root, config, root / "outbox", database_url)
        settings = project.settings()
        store = Store.open(settings.database_url)
        with store.transaction() as connection:
            ensure_list(connection, "weekly", title="The Weekly", now=datetime.now().astimezone())
            for address in READERS:
                add_subscriber(
                    connection,
                    address,
                    list_name="weekly",
                    consent="test",
                    now=datetime.now().astimezone(),
                )
        store.engine.dispose()
        return project

    return make


def _toml(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    return f'"{value}"'


def stories(published: datetime, count: int = 3) -> list[Article]:
    """Articles as a fetch would have stored them, published at `published`."""
    return [
        Article(
            id=f"story{n}",
            url=f"https://news.example.org/story-{n}",
            canonical_url=f"https://news.example.org/story-{n}",
            title=f"Harbour story number {n}",
            text=f"The harbour council met about ferry number {n} and its timetable. " * 3,
            source="Courier",
            origin="courier",
            published=published,
        )
        for n in range(count)
    ]


class Clock:
    """A clock the test moves by hand."""

    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> None:
        self.now += timedelta(**delta)
