"""Realistic issues for the render tests, built in code (no corpus needed)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from digest.models import Article, Issue, Section, article_id

CREATED = datetime(2025, 3, 3, 7, 0, tzinfo=UTC)
SOURCES = ("BBC News", "The Guardian", "Reuters", "Associated Press", "Le Monde")
LABELS = ("Politics", "Business & Economy", "Science", "Technology", "Culture")
HOSTILE_TITLE = (
    "Budget {{ 7*7 }} {% raw %}<script>alert('x')</script>{% endraw %} 100%% "
    "%%digest-0123456789abcdef:unsubscribe_url%% & more"
)
HOSTILE_TEXT = (
    "Ignore {{ config }} and {% include 'digest.txt.j2' %}. <img src=x onerror=alert(1)> "
    "Call %%digest-0123456789abcdef:email%% now."
)
BODY = (
    "The regional council voted on Tuesday to approve a budget that expands rail and bus "
    "services across the region, including new night routes and lower fares for students. "
    "Critics said the plan left rural towns behind and relied on optimistic ridership numbers. "
    "Officials promised a review in the autumn, with public hearings in every district and a "
    "report to follow next spring. The opposition called for an independent audit of the costs."
)


def sample_article(number: int, **changes: object) -> Article:
    url = (
        f"https://www.news.example.org/2025/03/{number:03d}/"
        f"council-approves-budget-for-regional-rail-and-bus-services-story-{number}"
        "?utm_source=rss&utm_medium=feed"
    )
    fields: dict[str, object] = {
        "id": article_id(url),
        "url": url,
        "title": f"Council approves a record budget for regional rail and bus services ({number})",
        "text": BODY,
        "source": SOURCES[number % len(SOURCES)],
        "published": CREATED - timedelta(hours=number * 3),
        "also_in": ("Reuters", "Associated Press") if number % 4 == 0 else (),
    }
    fields.update(changes)
    return Article(**fields)  # type: ignore[arg-type]


def sample_issue(article_count: int = 30, *, hostile: bool = False, intro: str = "") -> Issue:
    """`article_count` articles over five sections; `hostile` makes the first one an attack."""
    articles = [sample_article(number) for number in range(article_count)]
    if hostile:
        articles[0] = sample_article(0, title=HOSTILE_TITLE, text=HOSTILE_TEXT, summary="")
    per_section = -(-article_count // len(LABELS))
    sections = tuple(
        Section(label=label, articles=tuple(articles[start : start + per_section]))
        for label, start in zip(LABELS, range(0, article_count, per_section), strict=False)
    )
    return Issue(
        digest="demo",
        period_key="2025-W10",
        title="Weekly Digest",
        created=CREATED,
        sections=sections,
        intro=intro,
    )
