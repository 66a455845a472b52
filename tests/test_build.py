"""Building issues from the store: what is new since the last sent issue, ranking, only-if-new."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from typer.testing import CliRunner

from digest.cli import app
from digest.config import DigestConfig, SourceConfig
from digest.errors import NothingNew
from digest.models import Article
from digest.pipeline import build_issue
from digest.store import Store

T0 = datetime(2026, 11, 2, 8, 0, tzinfo=UTC)  # a Monday
DAY = timedelta(days=1)
WEEK = timedelta(days=7)

# Distinct vocabularies, so that dedupe and grouping keep every story apart.
STORIES = {
    "a1": "harbour breakwater rock armour engineers spring funding quay swell",
    "a2": "library archive customs house maritime documents volunteers catalogue",
    "a3": "seal colony sandbanks count doubled rangers survey coastline",
    "a4": "regatta schools sailing club county dinghy crews trophy",
    "a5": "lighthouse cottage museum shipwrecks keeper lamp restoration",
    "a6": "ferry timetable crossings island winter operator fares",
}


def story(id: str, published: datetime, *, origin: str = "courier") -> Article:
    words = STORIES[id]
    return Article(
        id=id,
        url=f"https://news.example.org/{id}",
        canonical_url=f"https://news.example.org/{id}",
        title=f"{words.split()[0].title()} {words.split()[1]} story",
        text=f"{words}. " * 3,
        source=origin.title(),
        origin=origin,
        published=published,
    )


def weekly(**changes: object) -> DigestConfig:
    return DigestConfig.model_validate(
        {"name": "weekly", "title": "The Weekly", "window": "7d", **changes}
    )


def ids(issue: object) -> set[str]:
    return {a.id for section in issue.sections for a in section.articles}  # type: ignore[attr-defined]


def send(store: Store, issue_id: int | None, at: datetime) -> None:
    assert issue_id is not None
    store.set_issue_status(issue_id, "sent", now=at)


def test_an_issue_skips_what_an_earlier_sent_issue_carried(store: Store) -> None:
    digest = weekly(window="14d")
    store.save_articles([story("a1", T0 - DAY), story("a2", T0 - 2 * DAY)], now=T0)
    first, created = build_issue(digest, store, now=T0)
    assert created and ids(first) == {"a1", "a2"}
    send(store, first.id, T0)

    store.save_articles([story("a3", T0 + DAY)], now=T0 + DAY)
    second, _ = build_issue(digest, store, now=T0 + WEEK)
    # a1 and a2 are still inside the 14-day window, but went out last week.
    assert ids(second) == {"a3"}


def test_a_draft_that_never_went_out_does_not_use_up_its_articles(store: Store) -> None:
    store.save_articles([story("a1", T0 - DAY)], now=T0)
    build_issue(weekly(window="14d"), store, now=T0)  # built, never sent
    again, created = build_issue(weekly(window="14d"), store, now=T0 + WEEK)
    assert created and ids(again) == {"a1"}


def test_after_a_gap_the_issue_reaches_back_to_the_last_sent_one(store: Store) -> None:
    digest = weekly()
    store.save_articles([story("a1", T0 - DAY)], now=T0)
    first, _ = build_issue(digest, store, now=T0)
    send(store, first.id, T0)
    # Two weeks without an issue (an outage): this one takes everything since the last.
    store.save_articles(
        [story("a2", T0 + 2 * DAY), story("a3", T0 + 10 * DAY), story("a4", T0 + 19 * DAY)],
        now=T0 + 19 * DAY,
    )
    late, _ = build_issue(digest, store, now=T0 + 3 * WEEK)
    assert ids(late) == {"a2", "a3", "a4"}


def test_nothing_new_builds_no_issue_and_says_why(store: Store) -> None:
    digest = weekly(window="14d")
    store.save_articles([story("a1", T0 - DAY)], now=T0)
    first, _ = build_issue(digest, store, now=T0)
    send(store, first.id, T0)
    with pytest.raises(
        NothingNew,
        match=r"^digest weekly: nothing new since .* \(0 new, 1 already sent, min_new = 1\)",
    ):
        build_issue(digest, store, now=T0 + WEEK)
    assert store.find_issue("weekly", "2026-11-09+2w") is None  # the next period: none


def test_min_new_sets_how_much_is_worth_an_issue(store: Store) -> None:
    store.save_articles([story("a1", T0 - DAY), story("a2", T0 - DAY)], now=T0)
    with pytest.raises(NothingNew, match=r"\(2 new, 0 already sent, min_new = 3\)"):
        build_issue(weekly(min_new=3), store, now=T0)
    issue, created = build_issue(weekly(min_new=2), store, now=T0)
    assert created and ids(issue) == {"a1", "a2"}


def test_source_weight_and_pins_order_a_section(store: Store) -> None:
    store.save_articles(
        [
            story("a1", T0 - 1 * DAY, origin="courier"),
            story("a2", T0 - 2 * DAY, origin="wire"),
            story("a3", T0 - 3 * DAY, origin="courier"),
        ],
        now=T0,
    )
    digest = weekly(
        topics=[{"name": "Coast", "sources": ["courier", "wire"]}],
        pin=["https://news.example.org/a3"],
    )
    sources = [
        SourceConfig(name="courier", url="https://courier.example/feed"),
        SourceConfig(name="wire", url="https://wire.example/feed", weight=3.0),
    ]
    issue, _ = build_issue(digest, store, now=T0, sources=sources)
    (coast,) = issue.sections
    assert [a.id for a in coast.articles] == ["a3", "a2", "a1"]


def test_build_command_reports_nothing_new_and_exits_0(tmp_path: Path) -> None:
    config = tmp_path / "digest.toml"
    config.write_text('version = 1\n[[digests]]\nname = "weekly"\ntitle = "W"\n', encoding="utf-8")
    result = CliRunner().invoke(app, ["--config", str(config), "build", "--json"])
    assert result.exit_code == 0, result.stderr
    reply = json.loads(result.stdout)
    assert reply["issue_id"] is None and reply["created"] is False
    assert reply["note"].startswith("digest weekly: nothing new since ")


def test_daily_and_weekly_digests_draw_from_one_store_independently(store: Store) -> None:
    daily = DigestConfig.model_validate(
        {"name": "daily", "title": "D", "list": "news", "window": "1d", "cadence": "daily"}
    )
    week = weekly(list="news", cadence="weekly")
    store.save_articles(
        [story("a1", T0 - 5 * DAY), story("a2", T0 - 3 * DAY), story("a3", T0 - DAY / 2)],
        now=T0,
    )
    today, _ = build_issue(daily, store, now=T0)
    assert ids(today) == {"a3"}
    send(store, today.id, T0)
    # What the daily issue sent is still new to the weekly one.
    this_week, _ = build_issue(week, store, now=T0)
    assert ids(this_week) == {"a1", "a2", "a3"}
