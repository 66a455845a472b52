"""Issue assembly: pick the period's articles and cap the grouped sections into one draft Issue."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from digest.models import Article, Issue, Section
from digest.topics import OTHER_NEWS

# Buckets of other lengths are counted from a Monday, so weekly multiples start on Mondays too.
_BUCKET_EPOCH = datetime(1970, 1, 5)
_DAY = timedelta(days=1)
_WEEK = timedelta(days=7)


def _require_aware(now: datetime) -> None:
    if now.tzinfo is None or now.utcoffset() is None:
        raise ValueError(f"now must be timezone-aware, got {now.isoformat()}")


def _require_positive(window: timedelta) -> None:
    if window <= timedelta(0):
        raise ValueError(f"window must be positive, got {window}")


def window_start(now: datetime, window: timedelta) -> datetime:
    """The earliest publication time an issue built at `now` takes articles from."""
    _require_aware(now)
    _require_positive(window)
    return now - window


def _window_suffix(window: timedelta) -> str:
    """'3d', '2w', '12h', '90m' or '45s': the largest unit that divides the window exactly."""
    seconds = int(window.total_seconds())
    for unit, size in (("w", 7 * 86400), ("d", 86400), ("h", 3600), ("m", 60)):
        if seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def period_key(now: datetime, window: timedelta, zone: ZoneInfo) -> str:
    """The issue's unique key within a digest; every `now` in the same period gives the same key.

    7-day windows: the ISO week of `now` in `zone` ("2026-W48"). 1-day windows: the local date
    ("2026-11-25"). Other lengths: the local start of the window-sized bucket that holds `now`,
    buckets counted in wall-clock time from Monday 1970-01-05, plus the length: "2026-11-22+3d"
    for whole days, "2026-11-25T12:00+12h" when the window is not a whole number of days (two
    buckets then share a date, so the time is part of the key).
    """
    _require_aware(now)
    _require_positive(window)
    local = now.astimezone(zone)
    if window == _WEEK:
        year, week, _ = local.isocalendar()
        return f"{year}-W{week:02d}"
    if window == _DAY:
        return local.date().isoformat()
    wall_clock = local.replace(tzinfo=None)
    start = _BUCKET_EPOCH + ((wall_clock - _BUCKET_EPOCH) // window) * window
    shown = start.date().isoformat() if window % _DAY == timedelta(0) else f"{start:%Y-%m-%dT%H:%M}"
    return f"{shown}+{_window_suffix(window)}"


def select_window(articles: Sequence[Article], *, start: datetime, end: datetime) -> list[Article]:
    """Articles published in [start, end), in their given order; undated articles are left out."""
    return [a for a in articles if a.published is not None and start <= a.published < end]


def assemble_issue(
    *,
    digest: str,
    title: str,
    sections: Sequence[Section],
    now: datetime,
    key: str,
    max_per_section: int,
    intro: str = "",
) -> Issue:
    """The draft issue: each section cut to its first `max_per_section` articles (the newest,
    as grouping orders them), empty sections dropped, OTHER_NEWS moved last."""
    if max_per_section < 1:
        raise ValueError(f"max_per_section must be at least 1, got {max_per_section}")
    capped = [
        Section(label=section.label, articles=tuple(section.articles[:max_per_section]))
        for section in sections
        if section.articles
    ]
    ordered = [s for s in capped if s.label != OTHER_NEWS] + [
        s for s in capped if s.label == OTHER_NEWS
    ]
    return Issue(
        digest=digest,
        period_key=key,
        title=title,
        created=now,
        sections=tuple(ordered),
        intro=intro,
    )


def _normalise_topic(topic: str) -> str:
    return " ".join(topic.split()).casefold()


def variant_key(topics: Sequence[str]) -> tuple[str, ...]:
    """A subscriber's topic choice as a key: whitespace-collapsed, casefolded, unique, sorted.

    Subscribers with equal keys get the same email body, so it is rendered once per key;
    the empty key means "all topics".
    """
    return tuple(sorted({_normalise_topic(t) for t in topics} - {""}))


def issue_for_topics(issue: Issue, topics: Sequence[str]) -> Issue:
    """The issue as a subscriber who chose `topics` receives it.

    Rule: a subscriber who chose no topics gets everything. One who chose topics gets only the
    sections named after them (compared caselessly); OTHER_NEWS and automatic (clustered)
    sections are for all-topics subscribers only, since nobody can pick them in advance.
    Choices naming no section this period are ignored, so the result may have no sections:
    callers skip sending it. When nothing is filtered out the same Issue object is returned.
    """
    wanted = set(variant_key(topics))
    if not wanted:
        return issue
    kept = tuple(s for s in issue.sections if _normalise_topic(s.label) in wanted)
    return issue if kept == issue.sections else replace(issue, sections=kept)
