"""Automatic sections: cluster articles no editor topic claims, and label each cluster."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING

import numpy as np
from sklearn.cluster import KMeans
from sklearn.decomposition import TruncatedSVD
from sklearn.feature_extraction.text import ENGLISH_STOP_WORDS, TfidfVectorizer
from sklearn.preprocessing import normalize
from threadpoolctl import threadpool_limits

from digest.models import Article, Section

if TYPE_CHECKING:  # scikit-learn hands us SciPy matrices; we never build one ourselves
    from scipy.sparse import csr_matrix

Embedder = Callable[[Sequence[str]], np.ndarray]

LABEL_SEPARATOR = " · "
LABEL_TERMS = 3
RANDOM_STATE = 0  # the default seed; every random choice below derives from the one passed in
# The bounds on the number of automatic sections. Below SMALL_INPUT articles two
# sections are allowed too, and no section may average fewer than MIN_SECTION_SIZE articles.
MIN_SECTIONS, MAX_SECTIONS = 3, 10
SMALL_INPUT = 30
MIN_SECTION_SIZE = 3
# LSA pays off once there are more terms than documents can pin down; below that it only blurs.
LSA_MIN_ARTICLES = 20
# One LSA component per ten articles, between 10 and 30. On AG News and BBC News 30 clustered
# as well as 50-100 and made the stability test below the steadiest; on 50-100 articles 10
# components did best, on 200 twenty (bench/bench_topics.py and the notes in its docstring).
LSA_COMPONENTS = (10, 30)
ARTICLES_PER_COMPONENT = 10
# Choosing k: a clustering is trusted as far as each of its clusters reappears (best-match
# Jaccard) when random subsets of STABILITY_FRACTION of the articles are clustered again; a k
# scores its least reproducible cluster's mean overlap. We take the most sections scoring within
# STABILITY_TOLERANCE of the best k: AG News's Business/Sci-Tech split is a little less
# reproducible than their merge, and a real topic split is worth showing. Silhouette, which
# this replaces, grew with k on news and chose 6 sections on both AG News (4 topics) and BBC
# News (5). When even the best k stays under STABLE_JACCARD (Hennig's threshold for a stable
# cluster) nothing is clearly a topic, and we keep the best k alone.
STABILITY_TOLERANCE = 0.1
STABLE_JACCARD = 0.75
# More runs, steadier scores: BBC News at k=6 scored 0.58-0.78 over eight seeds with 16 runs,
# 0.67-0.70 with 32.
STABILITY_RUNS = 32
# Each re-clustering keeps the best of five starts: with one or two, optimiser noise alone
# pushed AG News's real Business/Sci-Tech split out of the tolerance (mean ARI 0.48-0.50, not 0.54).
STABILITY_N_INIT = 5
STABILITY_FRACTION = 0.8
# Re-clustering cost grows with the input; this many articles tell as much about stability.
STABILITY_SAMPLE = 2000
# A sentence-embedding model reads a few hundred tokens at most; sending more only costs time.
EMBED_TEXT_CHARS = 2000
# Words every news story uses; as label terms they say nothing ("Mr · Said · Government"), and
# leftovers of HTML entities ("&lt;" → "lt") and wire-agency credits that group by who wrote a
# story, not what it is about (on AG News they cost 0.09 ARI).
# fmt: off
_NEWS_STOP_WORDS = frozenset({
    "mr", "mrs", "ms", "dr", "said", "says", "say", "told", "according", "also", "just", "like",
    "new", "year", "years", "week", "weeks", "day", "days", "time", "today", "yesterday",
    "lt", "gt", "quot", "amp", "nbsp", "reuters", "ap", "afp",
})
# fmt: on
# Words of two or more characters with at least one letter: "g20" stays, "2024" goes.
_TOKEN_PATTERN = r"(?u)\b(?=\w*[^\W\d_])\w\w+\b"


# ---------------------------------------------------------------- features


def _document(article: Article) -> str:
    # The headline once: counting it twice cost 0.04 ARI on AG News's short items (bench).
    return "\n".join([article.title, article.summary, article.text])


def embedding_text(article: Article) -> str:
    """What an embedding model is given for one article: headline first, then the body."""
    parts = (article.title, article.summary, article.text)
    return "\n".join(part for part in parts if part)[:EMBED_TEXT_CHARS]


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


def _reduced(features: csr_matrix | np.ndarray, seed: int) -> np.ndarray:
    """Unit rows in fewer dimensions (LSA for TF-IDF) when there are enough articles for it.

    Embeddings go the same way: clustering 256-dimensional vectors took 4-5 times as long as
    30 components and scored the same (AG News 2000: ARI 0.605 against 0.613; BBC 0.887, 0.890).
    """
    rows, columns = features.shape
    fewest, most = LSA_COMPONENTS
    components = min(max(fewest, rows // ARTICLES_PER_COMPONENT), most, rows - 1)
    if rows < LSA_MIN_ARTICLES or not 2 <= components < columns:
        dense = features.toarray() if hasattr(features, "toarray") else features
        return normalize(dense)
    svd = TruncatedSVD(n_components=components, random_state=seed)
    return normalize(svd.fit_transform(features))


def _embeddings(articles: Sequence[Article], embed: Embedder) -> np.ndarray:
    vectors = np.asarray(embed([embedding_text(a) for a in articles]), dtype=np.float64)
    if vectors.ndim != 2 or vectors.shape[0] != len(articles):
        raise ValueError(f"embed returned shape {vectors.shape} for {len(articles)} texts")
    # Normalised before any reduction, so only a vector's direction counts.
    return normalize(vectors)


# ---------------------------------------------------------------- choosing k


def _kmeans(points: np.ndarray, weights: np.ndarray, k: int, seed: int, n_init: int) -> np.ndarray:
    model = KMeans(n_clusters=k, n_init=n_init, random_state=seed)
    return model.fit_predict(points, sample_weight=weights)


def _best_match_jaccard(reference: np.ndarray, other: np.ndarray, k: int) -> np.ndarray:
    """For each reference cluster, its Jaccard overlap with the most similar `other` cluster."""
    both = np.zeros((k, k))
    np.add.at(both, (reference, other), 1)
    union = both.sum(axis=1)[:, None] + both.sum(axis=0)[None, :] - both
    return (both / np.maximum(union, 1)).max(axis=1)


def _stability(
    points: np.ndarray, weights: np.ndarray, labels: np.ndarray, k: int, seed: int
) -> float:
    """How well the least reproducible of the k clusters survives re-clustering on subsets."""
    sample = np.sort(np.random.default_rng(seed).permutation(len(points))[:STABILITY_SAMPLE])
    points, weights, labels = points[sample], weights[sample], labels[sample]
    size = max(k, round(STABILITY_FRACTION * len(points)))
    overlaps = []
    for run in range(seed + 1, seed + STABILITY_RUNS + 1):
        subset = np.sort(np.random.default_rng(run).permutation(len(points))[:size])
        again = _kmeans(points[subset], weights[subset], k, seed=run, n_init=STABILITY_N_INIT)
        overlaps.append(_best_match_jaccard(labels[subset], again, k))
    # Mean over runs first: one unlucky subset should not sink a cluster, a weak cluster should.
    return float(np.mean(overlaps, axis=0).min())


def _choose_clustering(
    points: np.ndarray, weights: np.ndarray, k: int | None, seed: int
) -> np.ndarray:
    """Cluster labels for distinct points: k forced, or the most sections about as stable as any."""
    distinct = len(points)
    if k is not None:
        forced = min(k, distinct)
        if forced < 2:
            return np.zeros(distinct, dtype=int)
        return _kmeans(points, weights, forced, seed, n_init=10)
    articles = int(weights.sum())
    largest = min(MAX_SECTIONS, articles // MIN_SECTION_SIZE, distinct)
    smallest = min(MIN_SECTIONS if articles >= SMALL_INPUT else 2, largest)
    if largest < 2:
        return np.zeros(distinct, dtype=int)
    scored = []
    for candidate in range(smallest, largest + 1):
        labels = _kmeans(points, weights, candidate, seed, n_init=10)
        scored.append((_stability(points, weights, labels, candidate, seed), labels))
    best = max(score for score, _ in scored)
    if best < STABLE_JACCARD:
        return next(labels for score, labels in scored if score == best)
    return [labels for score, labels in scored if score >= best - STABILITY_TOLERANCE][-1]


def _cluster(space: np.ndarray, k: int | None, seed: int) -> np.ndarray:
    """A cluster number for each row; identical rows (duplicate articles) always share one."""
    points, inverse, counts = np.unique(space, axis=0, return_inverse=True, return_counts=True)
    labels = _choose_clustering(points, counts.astype(np.float64), k, seed)
    return labels[inverse.ravel()]


# ---------------------------------------------------------------- labels


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


# ---------------------------------------------------------------- sections


def _canonical_order(articles: Iterable[Article]) -> list[Article]:
    """Clustering input order fixed by content, so the caller's order does not change results."""
    return sorted(articles, key=lambda a: (a.id, a.title, a.url))


def cluster_articles(
    articles: Sequence[Article],
    k: int | None = None,
    *,
    embed: Embedder | None = None,
    seed: int = RANDOM_STATE,
) -> tuple[list[Section], list[Article]]:
    """Automatic sections for `articles`, plus the ones left alone (clusters of one).

    The number of sections is `k`, or chosen: the most sections (3 to 10; 2 is allowed below
    30 articles) whose clusters reappear, when random subsets are clustered again, about as
    well as those of the most reproducible choice. `embed`, when given, turns
    texts into dense vectors (one row per text) that replace the TF-IDF/LSA space for
    clustering; labels still come from TF-IDF terms. Deterministic: the result depends only on
    the articles' content (and `embed`, `seed`), not on their order.
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
    features = _embeddings(ordered, embed) if embed else tfidf
    # One thread: KMeans adds per-thread partial sums in arrival order, so more threads may
    # round differently from run to run; and on a busy two-core host, two threads made the SVD
    # 25 times slower (2.1 s against 0.08 s). The embedding model keeps its own threads.
    with threadpool_limits(limits=1):
        assignment = _cluster(_reduced(features, seed), k, seed)
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
