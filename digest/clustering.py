"""Automatic sections: cluster articles no editor topic claims, and label each cluster."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from functools import partial
from typing import TYPE_CHECKING

import numpy as np
from sklearn.cluster import KMeans
from sklearn.decomposition import TruncatedSVD
from sklearn.feature_extraction.text import ENGLISH_STOP_WORDS, TfidfVectorizer
from sklearn.metrics import silhouette_score
from sklearn.preprocessing import normalize

from digest.models import Article, Section

if TYPE_CHECKING:  # scikit-learn hands us SciPy matrices; we never build one ourselves
    from scipy.sparse import csr_matrix

LABEL_SEPARATOR = " · "
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


# A sentence-embedding model reads a few hundred tokens at most; sending whole articles only
# costs tokenising time.
EMBED_TEXT_CHARS = 2000

Embedder = Callable[[Sequence[str]], np.ndarray]


def embedding_text(article: Article) -> str:
    """What an embedding model is given for one article: headline first, then the body."""
    return "\n".join(part for part in (article.title, article.summary, article.text) if part)[
        :EMBED_TEXT_CHARS
    ]


def _embedding_space(articles: Sequence[Article], embed: Embedder) -> np.ndarray:
    vectors = np.asarray(embed([embedding_text(a) for a in articles]), dtype=np.float64)
    if vectors.ndim != 2 or vectors.shape[0] != len(articles):
        raise ValueError(f"embed returned shape {vectors.shape} for {len(articles)} texts")
    return normalize(vectors)


def _canonical_order(articles: Iterable[Article]) -> list[Article]:
    """Clustering input order fixed by content, so the caller's order does not change results."""
    return sorted(articles, key=lambda a: (a.id, a.title, a.url))


def cluster_articles(
    articles: Sequence[Article], k: int | None = None, *, embed: Embedder | None = None
) -> tuple[list[Section], list[Article]]:
    """Automatic sections for `articles`, plus the ones left alone (clusters of one).

    `embed`, when given, turns texts into dense vectors (one row per text) that replace the
    TF-IDF space for clustering; labels still come from TF-IDF terms. Deterministic: the result
    depends only on the articles' content (and `embed`), not on their order.
    """
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
    space = _embedding_space(ordered, embed) if embed else _clustering_space(tfidf)
    assignment = _best_clustering(space, k)
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
