"""Near-duplicate detection: decide which articles tell the same story.

Three ways to be the same story, tried in this order for each article against the ones before
it: the same canonical URL or global GUID; a nearly identical title with a text that agrees;
or nearly the same text under any title, found through MinHash signatures of the texts' word
3-grams and LSH banding (candidates), then confirmed on the 3-grams themselves.
"""

from __future__ import annotations

import re
import zlib
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field, replace

import numpy as np
from rapidfuzz import fuzz, process
from rapidfuzz.utils import default_process

from digest.ingest.normalize import canonical_url
from digest.models import Article

# Syndicated copies keep the headline nearly word for word; token_set_ratio forgives
# a dropped or added word ("DS aims to touch gamers" / "Nintendo DS aims to touch gamers").
TITLE_SIMILARITY = 90
MIN_TITLE_WORDS = 4  # shorter titles ("Update", "In brief") say too little to match on
MAX_POSTINGS = 50  # title words in more articles than this are too common to search by
SHINGLE_WORDS = 3
MIN_SHINGLES = 20  # below this the text is a teaser: the title alone decides
# Share of the shorter text's shingles found in the longer one, so a trimmed copy still counts.
TITLE_AND_TEXT_CONTAINMENT = 0.5  # titles match; the texts only have to agree
TEXT_ONLY_CONTAINMENT = 0.8  # a retitled copy: the text alone has to be the same
# A shared feed preamble ("This fourth priority's main focus...") fills most of a short text:
# in dedup_pairs such unrelated snippets share up to 0.79 of their shingles, wire copies 0.88+.
SHORT_TEXT_SHINGLES = 50
SHORT_TEXT_CONTAINMENT = 0.85
# LSH bands of two rows each: two 32-bit signature values make one 64-bit band value. Texts
# with Jaccard similarity J share a band with probability 1 - (1 - J**2) ** 64: 0.93 at J = 0.2
# (a copy cut to a fifth of the original), 0.998 at J = 0.3.
PERMUTATIONS = 128
BANDS = PERMUTATIONS // 2
# Past this many texts in one bucket (a flood of copies, or a shared preamble), each text is a
# candidate for the first ones only; a real copy shares most of the other buckets anyway.
MAX_BUCKET_CANDIDATES = 50
SEED = 1  # fixed, so the same input always gives the same signatures

_WORD = re.compile(r"\w+")
# Odd 64-bit multipliers, one per word of a shingle: each word's hash is added, then multiplied,
# so that every bit of every word reaches the top 32 bits, which make the shingle's hash.
_FOLD = np.array([0x9E3779B97F4A7C15, 0xC2B2AE3D27D4EB4F, 0x165667B19E3779F9], dtype=np.uint64)
# One hash function per permutation, h(x) = (a * x + b) mod 2**64 >> 32 for 32-bit x
# (multiply-add-shift, a odd): its minimum over a text's shingles is one signature value.
_RANDOM = np.random.default_rng(SEED)
_A = _RANDOM.integers(1, 2**64 - 1, PERMUTATIONS, dtype=np.uint64, endpoint=True) | np.uint64(1)
_B = _RANDOM.integers(0, 2**64 - 1, PERMUTATIONS, dtype=np.uint64, endpoint=True)


@dataclass(frozen=True, slots=True)
class _Fingerprint:
    keys: tuple[str, ...]  # exact identities: canonical URL, globally unique GUID
    title: str
    title_words: frozenset[str]
    title_numbers: frozenset[str]  # "Q3", "2024", "4.75": titles differing here differ in story
    shingles: frozenset[int]  # hashes of the text's word 3-grams
    signature: np.ndarray | None  # MinHash of the shingles; None for a teaser


@dataclass(slots=True)
class _Index:
    """The articles seen so far, findable by exact key and title word.

    Duplicates are indexed too, pointing at the article they were merged into, so that a
    third copy resembling only the second is still found.
    """

    prints: list[_Fingerprint] = field(default_factory=list)
    kept_of: list[int] = field(default_factory=list)  # article -> position in the kept list
    by_key: dict[str, int] = field(default_factory=dict)
    by_word: defaultdict[str, list[int]] = field(default_factory=lambda: defaultdict(list))

    def add(self, fingerprint: _Fingerprint, kept: int) -> None:
        seen = len(self.prints)
        self.prints.append(fingerprint)
        self.kept_of.append(kept)
        for key in fingerprint.keys:
            self.by_key.setdefault(key, kept)
        if len(fingerprint.title_words) >= MIN_TITLE_WORDS:
            for word in fingerprint.title_words:
                self.by_word[word].append(seen)


def dedupe(articles: Sequence[Article]) -> list[Article]:
    """The articles without repeats, in input order; a kept article lists the other sources.

    Input order is priority: the first copy of a story is kept, later copies from other
    sources are named in its `also_in`.
    """
    prints = [_fingerprint(article) for article in articles]
    similar = _similar_texts(prints)
    kept: list[Article] = []
    index = _Index()
    for article, fingerprint, candidates in zip(articles, prints, similar, strict=True):
        match = _exact_match(fingerprint, index)
        if match is None:
            match = _title_match(fingerprint, index)
        if match is None:
            match = _text_match(fingerprint, candidates, index)
        if match is None:
            match = len(kept)
            kept.append(article)
        else:
            kept[match] = _merged(kept[match], article)
        index.add(fingerprint, match)
    return kept


def _fingerprint(article: Article) -> _Fingerprint:
    keys = []
    url = article.canonical_url or (canonical_url(article.url) if article.url else "")
    if url:
        keys.append(f"url {url}")
    if article.guid:
        keys.append(f"guid {_global_guid(article)}")
    shingles = _shingles(article.text)
    signature = _minhash(shingles) if len(shingles) >= MIN_SHINGLES else None
    title = default_process(article.title)
    words = frozenset(title.split())
    numbers = frozenset(word for word in words if any(c.isdigit() for c in word))
    return _Fingerprint(tuple(keys), title, words, numbers, frozenset(shingles.tolist()), signature)


def _shingles(text: str) -> np.ndarray:
    """The distinct word 3-grams of the text, as 32-bit hashes (in a uint64 array)."""
    words = _WORD.findall(text.lower())
    if len(words) < SHINGLE_WORDS:
        return np.empty(0, dtype=np.uint64)
    hashes = np.array([zlib.crc32(word.encode()) for word in words], dtype=np.uint64)
    count = len(words) - SHINGLE_WORDS + 1
    folded = np.zeros(count, dtype=np.uint64)
    for offset in range(SHINGLE_WORDS):
        folded = (folded + hashes[offset : offset + count]) * _FOLD[offset]
    return np.unique(folded >> np.uint64(32))


def _minhash(shingles: np.ndarray) -> np.ndarray:
    """The MinHash signature of the shingles: PERMUTATIONS 32-bit values."""
    hashed = np.multiply.outer(shingles, _A)
    hashed += _B
    # The shift keeps the order, so it can follow the min instead of preceding it.
    return (hashed.min(axis=0) >> np.uint64(32)).astype(np.uint32)


def _similar_texts(prints: Sequence[_Fingerprint]) -> list[set[int]]:
    """For each article, the earlier ones whose signature agrees with its own on a whole band."""
    similar: list[set[int]] = [set() for _ in prints]
    signed = [n for n, fingerprint in enumerate(prints) if fingerprint.signature is not None]
    if len(signed) < 2:
        return similar
    positions = np.array(signed)
    bands = np.stack([prints[n].signature for n in signed]).view(np.uint64)
    for band in bands.T:
        order = np.argsort(band, kind="stable")  # equal values stay in input order
        values = band[order]
        edges = np.flatnonzero(values[1:] != values[:-1]) + 1
        starts = np.concatenate(([0], edges))
        ends = np.concatenate((edges, [len(values)]))
        for start, end in zip(starts.tolist(), ends.tolist(), strict=True):
            if end - start > 1:
                bucket = positions[order[start:end]].tolist()
                for later, article in enumerate(bucket[1:], start=1):
                    similar[article].update(bucket[: min(later, MAX_BUCKET_CANDIDATES)])
    return similar


def _global_guid(article: Article) -> str:
    """GUIDs are unique within one feed; only URL-like ones mean the same item everywhere."""
    if "://" in article.guid or article.guid.startswith(("tag:", "urn:")):
        return article.guid
    return f"{article.source}\n{article.guid}"


def _exact_match(fingerprint: _Fingerprint, index: _Index) -> int | None:
    return next((index.by_key[k] for k in fingerprint.keys if k in index.by_key), None)


def _title_match(fingerprint: _Fingerprint, index: _Index) -> int | None:
    """The first kept article with a nearly identical title and a text that agrees."""
    if len(fingerprint.title_words) < MIN_TITLE_WORDS:
        return None
    # Titles this similar share a word; rare shared words are enough to find them.
    postings = [index.by_word.get(word, []) for word in fingerprint.title_words]
    rare = [p for p in postings if len(p) <= MAX_POSTINGS] or postings
    # Articles merged into the same kept one are interchangeable here, so ties need no order.
    seen = sorted({n for posting in rare for n in posting}, key=index.kept_of.__getitem__)
    if not seen:
        return None
    scores = process.cdist(
        [fingerprint.title],
        [index.prints[n].title for n in seen],
        scorer=fuzz.token_set_ratio,
        score_cutoff=TITLE_SIMILARITY,
        dtype=np.uint8,
    )[0]
    for n in (seen[position] for position in np.flatnonzero(scores).tolist()):
        other = index.prints[n]
        if other.title_numbers == fingerprint.title_numbers and _texts_agree(
            fingerprint.shingles, other.shingles
        ):
            return index.kept_of[n]
    return None


def _texts_agree(a: frozenset[int], b: frozenset[int]) -> bool:
    if len(a) < MIN_SHINGLES or len(b) < MIN_SHINGLES:
        return True  # a teaser cannot contradict the title
    return _containment(a, b) >= TITLE_AND_TEXT_CONTAINMENT


def _text_match(fingerprint: _Fingerprint, candidates: set[int], index: _Index) -> int | None:
    """The first kept article with nearly the same text, whatever its title says."""
    for n in sorted(candidates, key=index.kept_of.__getitem__):
        if _texts_same(fingerprint.shingles, index.prints[n].shingles):
            return index.kept_of[n]
    return None


def _texts_same(a: frozenset[int], b: frozenset[int]) -> bool:
    short = min(len(a), len(b)) < SHORT_TEXT_SHINGLES
    return _containment(a, b) >= (SHORT_TEXT_CONTAINMENT if short else TEXT_ONLY_CONTAINMENT)


def _containment(a: frozenset[int], b: frozenset[int]) -> float:
    return len(a & b) / min(len(a), len(b))


def _merged(kept: Article, duplicate: Article) -> Article:
    """The kept article, now also naming the duplicate's source(s)."""
    others = [s for s in (duplicate.source, *duplicate.also_in) if s != kept.source]
    also_in = tuple(dict.fromkeys((*kept.also_in, *others)))
    return kept if also_in == kept.also_in else replace(kept, also_in=also_in)
