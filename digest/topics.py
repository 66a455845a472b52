"""Topic grouping: put each article in one section, by editor rules first, then by clustering."""

from __future__ import annotations

import json
import re
import unicodedata
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from functools import lru_cache
from typing import TYPE_CHECKING

from digest.errors import DigestError
from digest.models import OTHER_NEWS, Article, Section, Topic

if TYPE_CHECKING:
    from digest.clustering import Embedder

# Below this many unclaimed articles a clustering says more about noise than about topics.
MIN_ARTICLES_TO_CLUSTER = 6


# ---------------------------------------------------------------- editor rules


def _fold(text: str) -> str:
    """Normalise for caseless comparison: NFC, then casefold ("Straße" ≡ "STRASSE")."""
    return unicodedata.normalize("NFC", text).casefold()


def _word_forms(word: str) -> str:
    """A regex for `word` and its regular English plurals ("policy" → policy|policies)."""
    escaped = re.escape(word)
    if not word[-1:].isalpha():
        return escaped
    forms = [escaped + "(?:e?s)?"]
    if len(word) > 1 and word.endswith("y") and word[-2] not in "aeiou":
        forms.append(re.escape(word[:-1]) + "ies")
    elif word.endswith("fe"):
        forms.append(re.escape(word[:-2]) + "ves")
    elif word.endswith("f"):
        forms.append(re.escape(word[:-1]) + "ves")
    return forms[0] if len(forms) == 1 else "(?:" + "|".join(forms) + ")"


def _phrase_pattern(phrase: str) -> str | None:
    """Words of the phrase in order, any whitespace between them, the last one plural-aware."""
    words = _fold(phrase).split()
    if not words:
        return None
    return r"\s+".join([*map(re.escape, words[:-1]), _word_forms(words[-1])])


@lru_cache(maxsize=512)
def _keyword_regex(keywords: tuple[str, ...]) -> re.Pattern[str] | None:
    """One regex matching any keyword as a whole word (edges must not touch a word character)."""
    patterns = [p for p in map(_phrase_pattern, keywords) if p]
    if not patterns:
        return None
    return re.compile(r"(?<!\w)(?:" + "|".join(patterns) + r")(?!\w)")


def _haystack(article: Article) -> str:
    """Everything an editor's keyword may be found in, folded for comparison."""
    return _fold("\n".join([article.title, article.summary, article.text, *article.categories]))


def _haystack_matches(haystack: str, topic: Topic, article: Article) -> bool:
    if not _claims(haystack, topic, article):
        return False
    unwanted = _keyword_regex(tuple(topic.exclude))
    return unwanted is None or not unwanted.search(haystack)


def _claims(haystack: str, topic: Topic, article: Article) -> bool:
    """A keyword in the text, one of the topic's feed categories, or one of its sources."""
    if topic.sources and _folded_names(topic.sources) & {
        _fold(article.origin),
        _fold(article.source),
    }:
        return True
    if topic.categories and _folded_names(topic.categories) & _folded_names(article.categories):
        return True
    wanted = _keyword_regex(tuple(topic.keywords))
    return wanted is not None and wanted.search(haystack) is not None


def _folded_names(names: Iterable[str]) -> frozenset[str]:
    return frozenset(" ".join(_fold(name).split()) for name in names if name.strip())


def matches_topic(article: Article, topic: Topic) -> bool:
    """True when the topic claims the article and none of its `exclude` words occur.

    A topic claims an article from one of its `sources` (config name or the name readers
    see), with one of its feed `categories` (compared caselessly), or with one of its
    keywords. Keywords and phrases match whole words, caselessly, in the title, summary, text
    and categories; the last word of each also matches its plural ("vaccine" → "vaccines",
    "policy" → "policies"); a phrase matches across any run of whitespace. Write keywords in
    the singular: plurals are not reduced ("vaccines" does not match "vaccine").
    """
    return _haystack_matches(_haystack(article), topic, article)


# ---------------------------------------------------------------- grouping


def _newest_first(articles: Iterable[Article]) -> tuple[Article, ...]:
    def key(article: Article) -> tuple[bool, float, str, str]:
        stamp = -article.published.timestamp() if article.published else 0.0
        return (article.published is None, stamp, article.title, article.id)

    return tuple(sorted(articles, key=key))


def _unique_labels(sections: Sequence[Section], taken: set[str]) -> list[Section]:
    """Automatic labels never collide with an editor topic or with each other."""
    unique: list[Section] = []
    for section in sections:
        label, counter = section.label, 2
        while label in taken:
            label, counter = f"{section.label} ({counter})", counter + 1
        taken.add(label)
        unique.append(Section(label=label, articles=section.articles))
    return unique


def group_by_topic(
    articles: Sequence[Article],
    topics: Sequence[Topic],
    *,
    k: int | None = None,
    embed: Embedder | None = None,
) -> list[Section]:
    """Sections in reading order: editor topics, automatic clusters, then OTHER_NEWS.

    Each article lands in exactly one section: the first editor topic (in config order) that
    it matches. Unclaimed articles are clustered when there are at least six of them (or
    whenever `k` forces the number of automatic sections); clusters of one and everything
    unclustered go to OTHER_NEWS. Empty sections are left out. Inside a section the newest
    article comes first (undated last), ties broken by title. Results depend only on the
    articles and topics, not on the order the articles arrive in.
    """
    if k is not None and k < 1:
        raise DigestError(f"the number of topics must be at least 1, not {k}")
    claimed: dict[str, list[Article]] = {topic.name: [] for topic in topics}
    unclaimed: list[Article] = []
    for article in articles:
        haystack = _haystack(article)
        topic = next((t for t in topics if _haystack_matches(haystack, t, article)), None)
        (claimed[topic.name] if topic else unclaimed).append(article)

    sections = [
        Section(label=name, articles=_newest_first(found))
        for name, found in claimed.items()
        if found
    ]
    automatic: list[Section] = []
    leftovers = unclaimed
    if len(unclaimed) >= (2 if k is not None else MIN_ARTICLES_TO_CLUSTER):
        # numpy and scikit-learn load only when a digest clusters (~1.5 s, ~100 MB): a send,
        # the web app and the scheduler never do.
        from digest.clustering import cluster_articles

        automatic, leftovers = cluster_articles(unclaimed, k, embed=embed)
    taken = {section.label for section in sections} | {OTHER_NEWS}
    for section in _unique_labels(automatic, taken):
        sections.append(Section(label=section.label, articles=_newest_first(section.articles)))
    if leftovers:
        sections.append(Section(label=OTHER_NEWS, articles=_newest_first(leftovers)))
    return sections


def group_to_json(sections: Sequence[Section]) -> dict:
    """The `digest group --json` shape: {"topics": [{"label", "article_ids"}]}."""
    return {
        "topics": [
            {"label": section.label, "article_ids": [a.id for a in section.articles]}
            for section in sections
        ]
    }


# ---------------------------------------------------------------- `digest group` input


def _text_field(record: dict, name: str, *, required: bool) -> str:
    value = record.get(name)
    if value is None:
        if required:
            raise ValueError(f'missing "{name}"')
        return ""
    if not isinstance(value, str):
        raise ValueError(f'"{name}" must be a string, not {type(value).__name__}')
    return value


def _published(record: dict) -> datetime | None:
    value = _text_field(record, "published", required=False)
    if not value:
        return None
    try:
        stamp = datetime.fromisoformat(value)
    except ValueError as error:
        raise ValueError(f'"published" is not an ISO 8601 date: {value!r}') from error
    # A date without a zone is taken as UTC, like the rest of the pipeline stores it.
    return stamp.replace(tzinfo=UTC) if stamp.tzinfo is None else stamp.astimezone(UTC)


def _categories(record: dict) -> tuple[str, ...]:
    value = record.get("categories", [])
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise ValueError('"categories" must be a list of strings')
    return tuple(value)


def _article_from_record(record: object, source: str) -> Article:
    if not isinstance(record, dict):
        raise ValueError(f"expected a JSON object, got {type(record).__name__}")
    raw_id = record.get("id")
    if isinstance(raw_id, int) and not isinstance(raw_id, bool):
        raw_id = str(raw_id)
    if not isinstance(raw_id, str) or not raw_id.strip():
        raise ValueError('"id" must be a non-empty string or an integer')
    return Article(
        id=raw_id,
        url=_text_field(record, "url", required=False),
        title=_text_field(record, "title", required=True),
        text=_text_field(record, "text", required=True),
        source=_text_field(record, "source", required=False) or source,
        published=_published(record),
        categories=_categories(record),
    )


def articles_from_jsonl(text: str, *, source: str = "input") -> list[Article]:
    """Articles from JSON Lines: {"id","title","text"[,"url","source","categories","published"]}.

    Blank lines are skipped and other keys ignored; a bad line raises DigestError naming it.
    """
    articles: list[Article] = []
    seen: set[str] = set()
    # Newlines only: a JSON string may hold U+2028 and friends, which splitlines() breaks on.
    for number, line in enumerate(text.split("\n"), start=1):
        if not line.strip():
            continue
        try:
            article = _article_from_record(json.loads(line), source)
        except json.JSONDecodeError as error:
            raise DigestError(f"line {number}: not valid JSON: {error.msg}") from error
        except ValueError as error:
            raise DigestError(f"line {number}: {error}") from error
        if article.id in seen:
            raise DigestError(f"line {number}: duplicate id {article.id!r}")
        seen.add(article.id)
        articles.append(article)
    return articles
