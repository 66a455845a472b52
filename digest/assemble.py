"""Issue assembly: pick the period's articles and cap the grouped sections into one draft Issue."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from digest.models import Article, Issue, Section
from digest.topics import OTHER_NEWS

# Buckets of other lengths are counted from a Monday, so weekly multiples start on Mondays too.
_BUCKET_EPOCH = datetime(1970, 1, 5)
_DAY = timedelta(days=1)
_WEEK = timedelta(days=7)
# Each other source that carried a story adds this share of its score again.
COVERAGE_BONUS = 0.5


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


@dataclass(frozen=True, slots=True)
class Ranking:
    """How an issue orders and caps its items; the defaults keep grouping's order."""

    window: timedelta = _WEEK  # recency halves over half of it
    source_weights: Mapping[str, float] = field(default_factory=dict)  # by Article.origin
    pins: tuple[str, ...] = ()  # article URLs or ids, first in their section, in this order
    max_items: int | None = None  # in the whole issue
    # "given": as grouped; "config": editor topics in config order, then automatic sections by
    # weight; "weight": every section by weight. OTHER_NEWS is always last.
    section_order: str = "given"
    editor_topics: tuple[str, ...] = ()


def article_score(article: Article, *, now: datetime, ranking: Ranking) -> float:
    """Recency × source weight × coverage: what puts a story near the top of its section.

    Recency halves every half window (an undated article counts as a window old); each other
    source that carried the story adds half of its weight again.
    """
    age = now - article.published if article.published else ranking.window
    half_life = ranking.window / 2
    recency = 0.5 ** (max(age, timedelta(0)) / half_life)
    weight = ranking.source_weights.get(article.origin, 1.0)
    coverage = 1 + COVERAGE_BONUS * len(article.also_in)
    return recency * weight * coverage


def _pin_rank(article: Article, pins: Sequence[str]) -> int:
    keys = {article.id, article.url, article.canonical_url} - {""}
    return next((i for i, pin in enumerate(pins) if pin in keys), len(pins))


def rank_articles(
    articles: Sequence[Article], *, now: datetime, ranking: Ranking
) -> tuple[Article, ...]:
    """Pinned articles first (in pin order), then by score; ties: newest, then title."""

    def key(article: Article) -> tuple[int, float, float, str, str]:
        stamp = article.published.timestamp() if article.published else float("-inf")
        score = article_score(article, now=now, ranking=ranking)
        return (_pin_rank(article, ranking.pins), -score, -stamp, article.title, article.id)

    return tuple(sorted(articles, key=key))


def assemble_issue(
    *,
    digest: str,
    title: str,
    sections: Sequence[Section],
    now: datetime,
    key: str,
    max_per_section: int,
    intro: str = "",
    ranking: Ranking | None = None,
) -> Issue:
    """The draft issue: sections ranked and capped, empty ones dropped, OTHER_NEWS last.

    Each section keeps its best `max_per_section` articles (see `rank_articles`); when the
    issue would hold more than `ranking.max_items`, the lowest-scored unpinned ones go.
    Sections follow `ranking.section_order` (see Ranking); a section's weight is the sum of
    its items' scores.
    """
    if max_per_section < 1:
        raise ValueError(f"max_per_section must be at least 1, got {max_per_section}")
    ranking = ranking or Ranking()
    capped = [
        Section(
            label=section.label,
            articles=rank_articles(section.articles, now=now, ranking=ranking)[:max_per_section],
        )
        for section in sections
        if section.articles
    ]
    if ranking.max_items is not None:
        capped = _cap_issue(capped, ranking.max_items, now=now, ranking=ranking)
    return Issue(
        digest=digest,
        period_key=key,
        title=title,
        created=now,
        sections=tuple(_ordered(capped, now=now, ranking=ranking)),
        intro=intro,
    )


def _cap_issue(
    sections: Sequence[Section], max_items: int, *, now: datetime, ranking: Ranking
) -> list[Section]:
    """At most max_items in all: pins are kept first, then the best scores issue-wide."""
    entries = [(s, a) for s in sections for a in s.articles]
    if len(entries) <= max_items:
        return list(sections)
    best = sorted(
        entries,
        key=lambda entry: (
            _pin_rank(entry[1], ranking.pins),
            -article_score(entry[1], now=now, ranking=ranking),
            entry[1].id,
        ),
    )[:max_items]
    kept = {(section.label, article.id) for section, article in best}  # labels are unique
    trimmed = [
        Section(s.label, tuple(a for a in s.articles if (s.label, a.id) in kept)) for s in sections
    ]
    return [s for s in trimmed if s.articles]


def _ordered(sections: Sequence[Section], *, now: datetime, ranking: Ranking) -> list[Section]:
    def weight(section: Section) -> float:
        return sum(article_score(a, now=now, ranking=ranking) for a in section.articles)

    others = [s for s in sections if s.label == OTHER_NEWS]
    rest = [s for s in sections if s.label != OTHER_NEWS]
    if ranking.section_order == "given":
        return rest + others
    if ranking.section_order == "weight":
        return sorted(rest, key=lambda s: (-weight(s), s.label)) + others
    editor = [s for s in rest if s.label in ranking.editor_topics]
    editor.sort(key=lambda s: ranking.editor_topics.index(s.label))
    automatic = [s for s in rest if s.label not in ranking.editor_topics]
    automatic.sort(key=lambda s: (-weight(s), s.label))
    return editor + automatic + others


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
