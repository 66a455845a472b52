"""Near-duplicate detection: decide which articles tell the same story."""

from __future__ import annotations

import re
import zlib
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field, replace

from rapidfuzz import fuzz
from rapidfuzz.utils import default_process

from digest.ingest.normalize import canonical_url
from digest.models import Article

# Syndicated copies keep the headline nearly word for word; token_set_ratio forgives
# a dropped or added word ("DS aims to touch gamers" / "Nintendo DS aims to touch gamers").
TITLE_SIMILARITY = 90
MIN_TITLE_WORDS = 4  # shorter titles ("Update", "In brief") say too little to match on
SHINGLE_WORDS = 3
MIN_SHINGLES = 20  # below this the text is a teaser, and the title alone decides
# Share of the shorter text's shingles found in the longer one, so a trimmed copy still counts.
TITLE_AND_TEXT_CONTAINMENT = 0.5  # titles match; the texts only have to agree
TEXT_ONLY_CONTAINMENT = 0.8  # a retitled copy: the text alone has to be the same
MIN_SHINGLES_TEXT_ONLY = 50  # short texts share boilerplate too easily to match on alone
# Words or shingles in more kept articles than this are too common to find candidates by.
MAX_POSTINGS = 50
# Candidates for the text-only match are found by one shingle in this many (chosen by a stable
# hash, so both copies sample the same ones), then confirmed on all of them.
SHINGLE_SAMPLE = 4
SAMPLE_SLACK = 0.2  # the sample's estimate of containment may run this far below the truth

_WORD = re.compile(r"\w+")


@dataclass(frozen=True, slots=True)
class _Fingerprint:
    keys: tuple[str, ...]  # exact identities: canonical URL, globally unique GUID
    title: str
    title_words: frozenset[str]
    title_numbers: frozenset[str]  # "Q3", "2024", "4.75": titles differing here differ in story
    shingles: frozenset[int]
    sample: frozenset[int]  # the shingles used to look up candidates


@dataclass(slots=True)
class _Index:
    """What has been kept so far, findable by exact key, title word and text shingle."""

    prints: list[_Fingerprint] = field(default_factory=list)
    by_key: dict[str, int] = field(default_factory=dict)
    by_word: defaultdict[str, list[int]] = field(default_factory=lambda: defaultdict(list))
    by_shingle: defaultdict[int, list[int]] = field(default_factory=lambda: defaultdict(list))

    def add(self, fingerprint: _Fingerprint) -> int:
        index = len(self.prints)
        self.prints.append(fingerprint)
        for word in fingerprint.title_words:
            self.by_word[word].append(index)
        if len(fingerprint.shingles) >= MIN_SHINGLES_TEXT_ONLY:
            for shingle in fingerprint.sample:
                self.by_shingle[shingle].append(index)
        return index

    def remember_keys(self, fingerprint: _Fingerprint, index: int) -> None:
        for key in fingerprint.keys:
            self.by_key.setdefault(key, index)


def dedupe(articles: Sequence[Article]) -> list[Article]:
    """The articles without repeats, in input order; a kept article lists the other sources.

    Input order is priority: the first copy of a story is kept, later copies from other
    sources are named in its `also_in`.
    """
    kept: list[Article] = []
    index = _Index()
    for article in articles:
        fingerprint = _fingerprint(article)
        match = _exact_match(fingerprint, index)
        if match is None:
            match = _title_match(fingerprint, index)
        if match is None:
            match = _text_match(fingerprint, index)
        if match is None:
            match = index.add(fingerprint)
            kept.append(article)
        else:
            kept[match] = _merged(kept[match], article)
        index.remember_keys(fingerprint, match)
    return kept


def _fingerprint(article: Article) -> _Fingerprint:
    keys = []
    url = article.canonical_url or (canonical_url(article.url) if article.url else "")
    if url:
        keys.append(f"url {url}")
    if article.guid:
        keys.append(f"guid {_global_guid(article)}")
    text_words = _WORD.findall(article.text.lower())
    shingles = frozenset(
        zlib.crc32(" ".join(text_words[i : i + SHINGLE_WORDS]).encode())
        for i in range(len(text_words) - SHINGLE_WORDS + 1)
    )
    sample = frozenset(shingle for shingle in shingles if shingle % SHINGLE_SAMPLE == 0)
    title = default_process(article.title)
    words = frozenset(title.split())
    numbers = frozenset(word for word in words if any(c.isdigit() for c in word))
    return _Fingerprint(tuple(keys), title, words, numbers, shingles, sample)


def _global_guid(article: Article) -> str:
    """GUIDs are unique within one feed; only URL-like ones mean the same item everywhere."""
    if "://" in article.guid or article.guid.startswith(("tag:", "urn:")):
        return article.guid
    return f"{article.source}\n{article.guid}"


def _exact_match(fingerprint: _Fingerprint, index: _Index) -> int | None:
    return next((index.by_key[k] for k in fingerprint.keys if k in index.by_key), None)


def _title_match(fingerprint: _Fingerprint, index: _Index) -> int | None:
    """The first kept article whose title is nearly the same and whose text agrees."""
    if len(fingerprint.title_words) < MIN_TITLE_WORDS:
        return None
    # Titles this similar share a word; rare shared words are enough to find them.
    postings = [index.by_word.get(word, []) for word in fingerprint.title_words]
    rare = [p for p in postings if len(p) <= MAX_POSTINGS] or postings
    for candidate in sorted({i for posting in rare for i in posting}):
        kept = index.prints[candidate]
        if (
            len(kept.title_words) >= MIN_TITLE_WORDS
            and kept.title_numbers == fingerprint.title_numbers
            and fuzz.token_set_ratio(fingerprint.title, kept.title) >= TITLE_SIMILARITY
            and _texts_agree(fingerprint.shingles, kept.shingles)
        ):
            return candidate
    return None


def _texts_agree(a: frozenset[int], b: frozenset[int]) -> bool:
    if len(a) < MIN_SHINGLES or len(b) < MIN_SHINGLES:
        return True  # a teaser cannot contradict the title
    return _containment(a, b) >= TITLE_AND_TEXT_CONTAINMENT


def _text_match(fingerprint: _Fingerprint, index: _Index) -> int | None:
    """The first kept article with the same long text, whatever its title says."""
    if len(fingerprint.shingles) < MIN_SHINGLES_TEXT_ONLY or not fingerprint.sample:
        return None
    shared: Counter[int] = Counter()
    uncounted = 0  # common shingles are not looked up, so `shared` may fall short by this
    for shingle in fingerprint.sample:
        posting = index.by_shingle.get(shingle, [])
        if len(posting) <= MAX_POSTINGS:
            shared.update(posting)
        else:
            uncounted += 1
    for candidate in sorted(shared):
        kept = index.prints[candidate]
        smaller_sample = min(len(kept.sample), len(fingerprint.sample))
        estimate = (shared[candidate] + uncounted) / max(smaller_sample, 1)
        if (
            estimate >= TEXT_ONLY_CONTAINMENT - SAMPLE_SLACK
            and _containment(fingerprint.shingles, kept.shingles) >= TEXT_ONLY_CONTAINMENT
        ):
            return candidate
    return None


def _containment(a: frozenset[int], b: frozenset[int]) -> float:
    return len(a & b) / min(len(a), len(b))


def _merged(kept: Article, duplicate: Article) -> Article:
    """The kept article, now also naming the duplicate's source(s)."""
    others = [s for s in (duplicate.source, *duplicate.also_in) if s != kept.source]
    also_in = tuple(dict.fromkeys((*kept.also_in, *others)))
    return kept if also_in == kept.also_in else replace(kept, also_in=also_in)
