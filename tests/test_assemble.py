"""Tests for digest/assemble.py: period keys, the article window, capping, subscriber variants."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from digest.assemble import (
    Ranking,
    article_score,
    assemble_issue,
    issue_for_topics,
    period_key,
    rank_articles,
    select_window,
    variant_key,
    window_start,
)
from digest.models import Article, Issue, Section
from digest.topics import OTHER_NEWS

pytestmark = pytest.mark.nodb  # the PostgreSQL pass skips it

BERLIN = ZoneInfo("Europe/Berlin")
NOW = datetime(2026, 11, 25, 7, 0, tzinfo=UTC)
DAY = timedelta(days=1)
WEEK = timedelta(days=7)


def article(id: str, published: datetime | None = NOW) -> Article:
    url = f"https://example.org/{id}"
    return Article(id=id, url=url, title=id, text="", source="test", published=published)


def section(label: str, *ids: str) -> Section:
    return Section(label=label, articles=tuple(article(i) for i in ids))


def berlin(*parts: int) -> datetime:
    return datetime(*parts, tzinfo=BERLIN)


# ---------------------------------------------------------------- period keys


def test_weekly_key_is_the_iso_week_in_the_digest_time_zone():
    sunday_night = berlin(2026, 11, 29, 23, 30)
    monday_morning = berlin(2026, 11, 30, 0, 30)
    # In UTC both moments are still Sunday; only the local zone puts the second in a new week.
    assert monday_morning.astimezone(UTC).weekday() == 6
    assert period_key(sunday_night, WEEK, BERLIN) == "2026-W48"
    assert period_key(monday_morning, WEEK, BERLIN) == "2026-W49"
    assert period_key(monday_morning, WEEK, ZoneInfo("UTC")) == "2026-W48"


def test_two_runs_in_the_same_period_share_a_key():
    monday = berlin(2026, 11, 23, 8, 0)
    assert period_key(monday, WEEK, BERLIN) == period_key(monday + 5 * DAY, WEEK, BERLIN)
    assert period_key(monday, DAY, BERLIN) == period_key(monday + timedelta(hours=15), DAY, BERLIN)
    assert period_key(monday, DAY, BERLIN) != period_key(monday + DAY, DAY, BERLIN)


def test_iso_week_year_differs_from_calendar_year_at_new_year():
    assert period_key(berlin(2026, 12, 31, 12, 0), WEEK, BERLIN) == "2026-W53"
    assert period_key(berlin(2027, 1, 4, 12, 0), WEEK, BERLIN) == "2027-W01"
    assert period_key(berlin(2025, 12, 29, 12, 0), WEEK, BERLIN) == "2026-W01"


def test_daily_key_is_the_local_date():
    late_utc = datetime(2026, 11, 25, 23, 30, tzinfo=UTC)
    assert period_key(late_utc, DAY, BERLIN) == "2026-11-26"
    assert period_key(late_utc, DAY, ZoneInfo("UTC")) == "2026-11-25"


def test_other_windows_use_buckets_counted_from_a_monday():
    three_days = timedelta(days=3)
    # 1970-01-05 + 6925 * 3 days = 2026-11-22, so buckets run 22-24, 25-27 November.
    assert period_key(berlin(2026, 11, 22, 0, 0), three_days, BERLIN) == "2026-11-22+3d"
    assert period_key(berlin(2026, 11, 24, 23, 59), three_days, BERLIN) == "2026-11-22+3d"
    assert period_key(berlin(2026, 11, 25, 0, 0), three_days, BERLIN) == "2026-11-25+3d"
    # Two-week buckets start on Mondays.
    fortnight = period_key(berlin(2026, 11, 25, 12, 0), 2 * WEEK, BERLIN)
    assert fortnight.endswith("+2w")
    assert datetime.fromisoformat(fortnight.removesuffix("+2w")).weekday() == 0


def test_sub_day_windows_put_the_bucket_time_in_the_key():
    half_day = timedelta(hours=12)
    assert period_key(berlin(2026, 11, 25, 11, 59), half_day, BERLIN) == "2026-11-25T00:00+12h"
    assert period_key(berlin(2026, 11, 25, 12, 0), half_day, BERLIN) == "2026-11-25T12:00+12h"


def test_period_key_refuses_naive_times_and_empty_windows():
    with pytest.raises(ValueError, match="timezone-aware"):
        period_key(datetime(2026, 11, 25, 8, 0), WEEK, BERLIN)
    with pytest.raises(ValueError, match="positive"):
        period_key(NOW, timedelta(0), BERLIN)


# ---------------------------------------------------------------- the window


def test_window_start_goes_back_one_window():
    assert window_start(NOW, WEEK) == datetime(2026, 11, 18, 7, 0, tzinfo=UTC)


def test_select_window_includes_its_start_excludes_its_end_and_undated_articles():
    start, end = NOW - DAY, NOW
    articles = [
        article("before", start - timedelta(microseconds=1)),
        article("at-start", start),
        article("inside", NOW - timedelta(hours=1)),
        article("at-end", end),
        article("undated", None),
    ]
    chosen = select_window(articles, start=start, end=end)
    assert [a.id for a in chosen] == ["at-start", "inside"]


def test_select_window_compares_instants_across_time_zones():
    start = datetime(2026, 11, 25, 0, 0, tzinfo=UTC)
    just_before = berlin(2026, 11, 25, 0, 59)  # 23:59 UTC the day before
    assert select_window([article("x", just_before)], start=start, end=start + DAY) == []


# ---------------------------------------------------------------- assembling


def build(sections: list[Section], cap: int = 2) -> Issue:
    return assemble_issue(
        digest="weekly",
        title="The Weekly",
        sections=sections,
        now=NOW,
        key="2026-W48",
        max_per_section=cap,
        intro="Hello",
    )


def test_assemble_caps_sections_keeping_the_first_articles():
    issue = build([section("Space", "a", "b", "c"), section("Money", "d")], cap=2)
    assert [(s.label, [a.id for a in s.articles]) for s in issue.sections] == [
        ("Space", ["a", "b"]),
        ("Money", ["d"]),
    ]
    assert issue.article_count == 3
    assert (issue.digest, issue.title, issue.period_key, issue.created, issue.intro) == (
        "weekly",
        "The Weekly",
        "2026-W48",
        NOW,
        "Hello",
    )


def test_assemble_drops_empty_sections_and_puts_other_news_last():
    issue = build([section(OTHER_NEWS, "x"), section("Empty"), section("Space", "a")])
    assert [s.label for s in issue.sections] == ["Space", OTHER_NEWS]


def test_assemble_refuses_a_cap_below_one():
    with pytest.raises(ValueError, match="max_per_section"):
        build([section("Space", "a")], cap=0)


# ---------------------------------------------------------------- subscriber variants


def full_issue() -> Issue:
    return build(
        [
            section("Space", "a"),
            section("Money", "b"),
            section("Nato · Rutte · Wiesbaden", "c", "d"),
            section(OTHER_NEWS, "e"),
        ]
    )


def test_subscriber_without_topics_gets_the_whole_issue():
    issue = full_issue()
    assert issue_for_topics(issue, []) is issue
    assert issue_for_topics(issue, ["  "]) is issue


def test_subscriber_with_topics_gets_only_those_sections_without_other_news():
    issue = full_issue()
    variant = issue_for_topics(issue, ["money", "Space", "Sport"])
    assert [s.label for s in variant.sections] == ["Space", "Money"]
    assert (variant.digest, variant.period_key, variant.intro) == (
        issue.digest,
        issue.period_key,
        issue.intro,
    )


def test_subscriber_whose_topics_are_quiet_this_period_gets_an_empty_variant():
    assert issue_for_topics(full_issue(), ["Sport"]).sections == ()


def test_variant_returns_the_same_issue_when_nothing_is_filtered():
    issue = build([section("Space", "a"), section("Money", "b")])
    assert issue_for_topics(issue, ["Money", "Space"]) is issue


def test_variant_key_is_normalised_sorted_and_unique():
    assert variant_key(["Space", " money ", "space", "Climate   change", ""]) == (
        "climate change",
        "money",
        "space",
    )
    assert variant_key([]) == ()
    assert variant_key(["B", "A"]) == variant_key(["a", "b"])


# ---------------------------------------------------------------- ranking and caps


def scored(id: str, hours_old: float, *, origin: str = "", also_in: int = 0) -> Article:
    return replace(
        article(id, NOW - timedelta(hours=hours_old)),
        origin=origin,
        also_in=tuple(f"other{n}" for n in range(also_in)),
    )


def test_score_halves_every_half_window_and_counts_weight_and_coverage():
    ranking = Ranking(window=2 * DAY, source_weights={"wire": 2.0})
    fresh = article_score(scored("a", 0), now=NOW, ranking=ranking)
    day_old = article_score(scored("b", 24), now=NOW, ranking=ranking)
    assert fresh == pytest.approx(1.0) and day_old == pytest.approx(0.5)
    weighted = article_score(scored("c", 24, origin="wire"), now=NOW, ranking=ranking)
    assert weighted == pytest.approx(1.0)
    covered = article_score(scored("d", 24, also_in=2), now=NOW, ranking=ranking)
    assert covered == pytest.approx(1.0)  # two more sources: half again each
    undated = replace(article("e", None))
    assert article_score(undated, now=NOW, ranking=ranking) == pytest.approx(0.25)


def test_sections_rank_by_score_with_pins_first():
    story = [
        scored("old-but-everywhere", 60, also_in=3),
        scored("fresh", 1),
        scored("older", 30),
        scored("pinned", 100),
    ]
    ranking = Ranking(window=WEEK, pins=("https://example.org/pinned",))
    ranked = rank_articles(story, now=NOW, ranking=ranking)
    # Four sources carrying a story outweigh two and a half days of age.
    assert [a.id for a in ranked] == ["pinned", "old-but-everywhere", "fresh", "older"]


def test_issue_cap_keeps_the_best_items_across_sections():
    sections = [
        Section("Space", (scored("s1", 1), scored("s2", 90), scored("s3", 100))),
        Section("Money", (scored("m1", 2), scored("m2", 95))),
        Section(OTHER_NEWS, (scored("o1", 150),)),
    ]
    issue = assemble_issue(
        digest="weekly",
        title="W",
        sections=sections,
        now=NOW,
        key="k",
        max_per_section=5,
        ranking=Ranking(window=WEEK, max_items=3, pins=("o1",)),
    )
    assert [(s.label, [a.id for a in s.articles]) for s in issue.sections] == [
        ("Space", ["s1"]),
        ("Money", ["m1"]),
        (OTHER_NEWS, ["o1"]),
    ]


def test_section_order_config_keeps_editor_topics_then_automatic_by_weight():
    sections = [
        Section("Auto light", (scored("a1", 150),)),
        Section("Money", (scored("m1", 100),)),
        Section(OTHER_NEWS, (scored("o1", 0),)),
        Section("Auto heavy", (scored("h1", 1), scored("h2", 2))),
        Section("Space", (scored("s1", 0),)),
    ]

    def order(section_order: str) -> list[str]:
        ranking = Ranking(
            window=WEEK, section_order=section_order, editor_topics=("Space", "Money")
        )
        issue = assemble_issue(
            digest="w",
            title="W",
            sections=sections,
            now=NOW,
            key="k",
            max_per_section=5,
            ranking=ranking,
        )
        return [s.label for s in issue.sections]

    assert order("config") == ["Space", "Money", "Auto heavy", "Auto light", OTHER_NEWS]
    assert order("weight") == ["Auto heavy", "Space", "Money", "Auto light", OTHER_NEWS]
    assert order("given") == ["Auto light", "Money", "Auto heavy", "Space", OTHER_NEWS]
