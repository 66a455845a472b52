"""Topic grouping: put each article in one section, by editor rules first, then by clustering."""

from __future__ import annotations

import json
import re
import unicodedata
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from functools import lru_cache, partial
from typing import TYPE_CHECKING

import numpy as np
from sklearn.cluster import KMeans
from sklearn.decomposition import TruncatedSVD
from sklearn.feature_extraction.text import ENGLISH_STOP_WORDS, TfidfVectorizer
from sklearn.metrics import silhouette_score
from sklearn.preprocessing import normalize

from digest.errors import DigestError
from digest.models import Article, Section, Topic

if TYPE_CHECKING:  # scikit-learn hands us SciPy matrices; we never build one ourselves
    from scipy.sparse import csr_matrix

OTHER_NEWS = "Other news"
LABEL_SEPARATOR = " · "

# Below this many unclaimed articles a clustering says more about noise than about topics.
MIN_ARTICLES_TO_CLUSTER = 6
MAX_AUTOMATIC_SECTIONS = 8
LABEL_TERMS = 3
RANDOM_STATE = 0
# LSA pays off once there are more terms than documents can pin down; below that it only blurs.
LSA_MIN_ARTICLES = 20
# At most 8 clusters live in a space of about that many dimensions; more components mostly add
# noise that KMeans then splits on (measured on BBC News: 10 → ARI 0.86, 100 → 0.61).
LSA_COMPONENTS = 10
# Silhouette creeps up with k on text, splitting topics into sub-stories; take the fewest
# sections whose score is within this fraction of the best one.
SILHOUETTE_TOLERANCE = 0.10
# Silhouette is quadratic in the number of articles; a fixed-seed sample keeps it bounded.
SILHOUETTE_SAMPLE = 2000
# Words every news story uses; as label terms they say nothing ("Mr · Said · Government").
# fmt: off
_NEWS_STOP_WORDS = frozenset({
    "mr", "mrs", "ms", "dr", "said", "says", "say", "told", "according", "also", "just", "like",
    "new", "year", "years", "week", "weeks", "day", "days", "time", "today", "yesterday",
})
# fmt: on
# Words of two or more characters with at least one letter: "g20" stays, "2024" goes.
_TOKEN_PATTERN = r"(?u)\b(?=\w*[^\W\d_])\w\w+\b"


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


def _haystack_matches(haystack: str, topic: Topic) -> bool:
    wanted = _keyword_regex(tuple(topic.keywords))
    if wanted is None or not wanted.search(haystack):
        return False
    unwanted = _keyword_regex(tuple(topic.exclude))
    return unwanted is None or not unwanted.search(haystack)


def matches_topic(article: Article, topic: Topic) -> bool:
    """True when a keyword of `topic` occurs in the article and none of its `exclude` words do.

    Keywords and phrases match whole words, caselessly, in the title, summary, text and
    categories; the last word of each also matches its plural ("vaccine" → "vaccines",
    "policy" → "policies"); a phrase matches across any run of whitespace. Write keywords in
    the singular: plurals are not reduced ("vaccines" does not match "vaccine").
    """
    return _haystack_matches(_haystack(article), topic)


# ---------------------------------------------------------------- automatic sections


def _document(article: Article) -> str:
    # The headline says what the story is about more densely than the body: count it twice.
    return "\n".join([article.title, article.title, article.summary, article.text])


def _tfidf(documents: Sequence[str]) -> tuple[csr_matrix | None, list[str]]:
    """TF-IDF rows over the terms that at least two documents share (one row per document)."""
    vectorizer = TfidfVectorizer(
        stop_words=sorted(ENGLISH_STOP_WORDS | _NEWS_STOP_WORDS),
        token_pattern=_TOKEN_PATTERN,
        sublinear_tf=True,
        # A term in one document cannot bring two together; one in most of them cannot separate.
        min_df=2,
        max_df=0.8 if len(documents) >= 10 else 1.0,
    )
    try:
        tfidf = vectorizer.fit_transform(documents)
    except ValueError:  # no term survives: the documents share no vocabulary
        return None, []
    return tfidf.tocsr(), list(vectorizer.get_feature_names_out())


def _clustering_space(tfidf: csr_matrix) -> np.ndarray | csr_matrix:
    """LSA (normalised) when there are enough documents for it to help; TF-IDF otherwise."""
    rows, columns = tfidf.shape
    components = min(LSA_COMPONENTS, rows - 1, columns - 1)
    if rows < LSA_MIN_ARTICLES or components < 2:
        return tfidf
    svd = TruncatedSVD(n_components=components, random_state=RANDOM_STATE)
    return normalize(svd.fit_transform(tfidf))


def _kmeans(space: np.ndarray | csr_matrix, k: int) -> np.ndarray:
    model = KMeans(n_clusters=k, n_init=10, random_state=RANDOM_STATE)
    return model.fit_predict(space)


def _silhouette(space: np.ndarray | csr_matrix, labels: np.ndarray) -> float:
    if len(set(labels.tolist())) < 2:
        return -1.0
    sample = min(space.shape[0], SILHOUETTE_SAMPLE)
    return float(
        silhouette_score(
            space, labels, metric="cosine", sample_size=sample, random_state=RANDOM_STATE
        )
    )


def _best_clustering(space: np.ndarray | csr_matrix, k: int | None) -> np.ndarray:
    """Cluster labels; k forced, or chosen by silhouette within [2, min(8, n // 2)]."""
    n = space.shape[0]
    # KMeans cannot make more clusters than there are distinct articles (duplicates happen).
    distinct = len(np.unique(space.toarray() if hasattr(space, "toarray") else space, axis=0))
    if k is not None:
        forced = min(k, distinct)
        return _kmeans(space, forced) if forced > 1 else np.zeros(n, dtype=int)
    candidates = range(2, min(MAX_AUTOMATIC_SECTIONS, n // 2, distinct) + 1)
    scored = [
        (_silhouette(space, labels), labels) for labels in map(partial(_kmeans, space), candidates)
    ]
    if not scored:
        return np.zeros(n, dtype=int)
    best = max(score for score, _ in scored)
    threshold = best - abs(best) * SILHOUETTE_TOLERANCE
    return next(labels for score, labels in scored if score >= threshold)


def _same_term(a: str, b: str) -> bool:
    """'vaccine' and 'vaccines', 'nation' and 'national' would spend two label slots on one idea."""
    shorter, longer = sorted((a, b), key=len)
    return a.rstrip("s") == b.rstrip("s") or (len(shorter) >= 4 and longer.startswith(shorter))


def _mean_row(rows: csr_matrix) -> np.ndarray:
    return np.asarray(rows.mean(axis=0)).ravel() if rows.shape[0] else np.zeros(rows.shape[1])


def _cluster_label(tfidf: csr_matrix, members: np.ndarray, terms: Sequence[str]) -> str:
    """The cluster's most distinctive terms: high weight inside, low weight outside."""
    inside = _mean_row(tfidf[members])
    outside = _mean_row(tfidf[~members])
    distinctiveness = inside - outside
    # Stable sort on (-score, term) so ties never depend on the platform.
    order = sorted(range(len(terms)), key=lambda i: (-distinctiveness[i], terms[i]))
    chosen: list[str] = []
    for index in order:
        if distinctiveness[index] <= 0 or len(chosen) == LABEL_TERMS:
            break
        if not any(_same_term(terms[index], taken) for taken in chosen):
            chosen.append(terms[index])
    return LABEL_SEPARATOR.join(term.title() for term in chosen)


def _canonical_order(articles: Iterable[Article]) -> list[Article]:
    """Clustering input order fixed by content, so the caller's order does not change results."""
    return sorted(articles, key=lambda a: (a.id, a.title, a.url))


def _cluster(articles: Sequence[Article], k: int | None) -> tuple[list[Section], list[Article]]:
    """Automatic sections for `articles`, plus the ones left alone (clusters of one)."""
    ordered = _canonical_order(articles)
    tfidf, terms = _tfidf([_document(a) for a in ordered])
    if tfidf is None:
        return [], ordered
    # An article sharing no term with any other belongs to no cluster; KMeans would still
    # force it into one.
    connected = tfidf.getnnz(axis=1) > 0
    leftovers = [a for a, keep in zip(ordered, connected, strict=True) if not keep]
    ordered = [a for a, keep in zip(ordered, connected, strict=True) if keep]
    tfidf = tfidf[connected]
    if len(ordered) < 2:
        return [], leftovers + ordered
    assignment = _best_clustering(_clustering_space(tfidf), k)
    sections: list[Section] = []
    for cluster in sorted(set(assignment.tolist())):
        members = assignment == cluster
        chosen = [a for a, member in zip(ordered, members, strict=True) if member]
        label = _cluster_label(tfidf, members, terms)
        if len(chosen) < 2 or not label:
            leftovers.extend(chosen)
        else:
            sections.append(Section(label=label, articles=tuple(chosen)))
    sections.sort(key=lambda s: (-len(s.articles), s.label))
    return sections, leftovers


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
    articles: Sequence[Article], topics: Sequence[Topic], *, k: int | None = None
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
        topic = next((t for t in topics if _haystack_matches(haystack, t)), None)
        (claimed[topic.name] if topic else unclaimed).append(article)

    sections = [
        Section(label=name, articles=_newest_first(found))
        for name, found in claimed.items()
        if found
    ]
    automatic: list[Section] = []
    leftovers = unclaimed
    if len(unclaimed) >= (2 if k is not None else MIN_ARTICLES_TO_CLUSTER):
        automatic, leftovers = _cluster(unclaimed, k)
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
