"""Gathering: every configured source fetched, read, completed and cleaned into stored articles.

The order matters: only articles the store has not seen go on, so full-text pages are fetched
once per item and each article counts once towards its source's learned boilerplate.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path

from digest.config import FetchConfig, Settings, SourceConfig
from digest.errors import DigestError, ExtractError, SourceError
from digest.ingest.boilerplate import MIN_ARTICLES, paragraph_fingerprints, strip_boilerplate
from digest.ingest.dedupe import dedupe
from digest.ingest.extract import extract_document, extract_page
from digest.ingest.fetch import Fetched, FetchLimits, fetch_many, is_url, read_folder
from digest.models import Article
from digest.store import Store

log = logging.getLogger(__name__)

# A feed item with fewer words than this carries a teaser; `full_text = true` fetches its page.
TEASER_MAX_WORDS = 150


@dataclass(frozen=True, slots=True)
class SourceOutcome:
    name: str
    found: int = 0
    error: str = ""
    defect: str = ""
    not_modified: bool = False


@dataclass(frozen=True, slots=True)
class FetchReport:
    sources: tuple[SourceOutcome, ...]
    found: int
    duplicates: int
    stored: int

    @property
    def failed(self) -> tuple[SourceOutcome, ...]:
        return tuple(s for s in self.sources if s.error)


class _Progress:
    """Counts documents fetched against documents planned, which grow with full-text pages."""

    def __init__(self, report: Callable[[int, int], None], *, total: int) -> None:
        self.report, self.done, self.total = report, 0, total
        report(0, total)

    def add(self, count: int) -> None:
        self.total += count
        self.report(self.done, self.total)

    def advance(self, _location: str) -> None:
        self.done += 1
        self.report(self.done, self.total)


@dataclass(frozen=True, slots=True)
class _SourceRead:
    """One source after reading: its outcome so far and the articles the store lacks."""

    source: SourceConfig
    locations: tuple[str, ...]
    outcome: SourceOutcome
    articles: tuple[Article, ...]  # everything the source holds now
    unseen: tuple[Article, ...]  # of those, the ones to complete, clean and store


async def fetch_sources(
    settings: Settings,
    store: Store,
    *,
    clock: Callable[[], datetime],
    only: str | None = None,
    limits: FetchLimits | None = None,
    on_progress: Callable[[int, int], None] = lambda _done, _total: None,
) -> FetchReport:
    """Fetch every source (or one), store new articles; a failing source never stops the rest.

    `on_progress(done, total)` follows the documents fetched: feeds, files and full-text pages.
    """
    chosen = [s for s in settings.sources if only is None or s.name == only]
    if only is not None and not chosen:
        raise DigestError(f"no source named {only!r} in {settings.path}")
    limits = limits or fetch_limits(settings.file.fetch)
    plan = [(source, _locations(settings, source)) for source in chosen]
    validators = {
        locations[0]: store.source_validators(source.name)
        for source, locations in plan
        if len(locations) == 1 and is_url(locations[0])
    }
    everything = [location for _source, locations in plan for location in locations]
    progress = _Progress(on_progress, total=len(everything))
    results = await fetch_many(
        everything, limits=limits, validators=validators, on_fetched=progress.advance
    )
    fetched = dict(zip(everything, results, strict=True))

    reads = []
    for source, locations in plan:
        outcome, articles = _read_source(source, locations, fetched)
        unseen = store.unseen_articles(articles) if articles else []
        reads.append(_SourceRead(source, tuple(locations), outcome, tuple(articles), tuple(unseen)))
    reads = await _complete_teasers(reads, limits=limits, progress=progress)

    current: list[Article] = []
    for read in reads:
        now = clock()
        cleaned = _without_boilerplate(store, read.source, read.unseen, now=now)
        current.extend(_updated(read.articles, cleaned))
        _record_health(settings, store, read, fetched, now=now)
    # Stored articles take part, so a new copy of a story already kept is still a duplicate.
    unique = dedupe(current)
    stored = store.save_articles(unique, now=clock())
    return FetchReport(
        sources=tuple(read.outcome for read in reads),
        found=len(current),
        duplicates=len(current) - len(unique),
        stored=stored,
    )


def fetch_limits(config: FetchConfig) -> FetchLimits:
    """The operator's [fetch] settings as the fetcher's limits."""
    defaults = FetchLimits()
    return FetchLimits(
        max_bytes=config.max_bytes,
        total_timeout=config.timeout,
        connect_timeout=min(defaults.connect_timeout, config.timeout),
        read_timeout=min(defaults.read_timeout, config.timeout),
        per_host=config.per_host,
        total=config.concurrency,
    )


def _updated(articles: Sequence[Article], changed: Sequence[Article]) -> list[Article]:
    """The articles in their order, each replaced by its changed version where there is one."""
    by_id = {article.id: article for article in changed}
    return [by_id.get(article.id, article) for article in articles]


def _locations(settings: Settings, source: SourceConfig) -> list[str]:
    """A folder source stands for every article file in it; [] when the path is missing."""
    location = settings.source_location(source)
    if is_url(location):
        return [location]
    path = Path(location)
    try:
        return [str(p) for p in read_folder(path)] if path.is_dir() else [location]
    except OSError as error:
        log.warning("source=%s cannot list %s: %s", source.name, source.url, error)
        return []


def _record_health(
    settings: Settings,
    store: Store,
    read: _SourceRead,
    fetched: dict[str, Fetched | SourceError],
    *,
    now: datetime,
) -> None:
    source, outcome = read.source, read.outcome
    location = settings.source_location(source)
    if outcome.error:
        store.record_source_failure(source.name, location, outcome.error, now=now)
        log.warning("source=%s failed: %s", source.name, outcome.error)
        return
    single = fetched[read.locations[0]] if len(read.locations) == 1 else None
    store.record_source_success(
        source.name,
        location,
        now=now,
        etag=single.etag if isinstance(single, Fetched) else "",
        last_modified=single.last_modified if isinstance(single, Fetched) else "",
        defect=outcome.defect,
        articles_seen=outcome.found,
    )


def _read_source(
    source: SourceConfig,
    locations: Sequence[str],
    fetched: dict[str, Fetched | SourceError],
) -> tuple[SourceOutcome, list[Article]]:
    if not locations:
        return SourceOutcome(source.name, error=f"{source.url}: no such file or folder"), []
    articles: list[Article] = []
    errors: list[str] = []
    defects: list[str] = []
    not_modified = False
    for location in locations:
        result = fetched[location]
        if isinstance(result, SourceError):
            errors.append(str(result))
            continue
        if result.not_modified:
            not_modified = True
            continue
        try:
            document = extract_document(
                result.data,
                location=result.final_url or location,
                source=source.name,
                content_type=result.content_type,
            )
        except (SourceError, ExtractError) as error:
            errors.append(str(error))
            continue
        mismatch = _kind_mismatch(source.kind, document)
        if mismatch:
            errors.append(f"{source.name}: {location}: {mismatch}")
        elif isinstance(document, Article):
            articles.append(
                replace(document, source=source.title or source.name, origin=source.name)
            )
        else:
            info, items = document
            shown = source.title or info.title or source.name
            articles.extend(replace(item, source=shown, origin=source.name) for item in items)
            if info.defect:
                defects.append(info.defect)
    # A folder with one unreadable file is still a working source; all files failing is not.
    error = errors[0] if errors and not articles and not not_modified else ""
    return (
        SourceOutcome(
            name=source.name,
            found=len(articles),
            error=error,
            defect="; ".join(defects + (errors if not error else [])),
            not_modified=not_modified,
        ),
        articles,
    )


def _kind_mismatch(kind: str, document: Article | tuple[object, object]) -> str:
    """A source's declared kind guards against a URL that silently changed meaning."""
    is_feed = not isinstance(document, Article)
    if kind == "feed" and not is_feed:
        return 'kind = "feed", but this is an article page, not a feed'
    if kind in ("page", "file") and is_feed:
        return f'kind = "{kind}", but this is a feed'
    return ""


# --- full text -----------------------------------------------------------------------------


def is_teaser(article: Article, locations: Sequence[str]) -> bool:
    """A feed item that links to its own page and carries too little of the story itself."""
    return (
        is_url(article.url)
        and article.url not in locations
        and len(article.text.split()) < TEASER_MAX_WORDS
    )


async def _complete_teasers(
    reads: list[_SourceRead], *, limits: FetchLimits, progress: _Progress
) -> list[_SourceRead]:
    """For `full_text = true` sources, each teaser's page is fetched and its article taken in.

    All sources' pages are fetched together, within the same global and per-host limits.
    A page that fails leaves its item as the feed gave it, and the source notes the defect.
    """
    wanted = {
        read.source.name: [a for a in read.unseen if is_teaser(a, read.locations)]
        for read in reads
        if read.source.full_text and not read.outcome.error
    }
    urls = sorted({article.url for teasers in wanted.values() for article in teasers})
    if not urls:
        return reads
    progress.add(len(urls))
    fetched = await fetch_many(urls, limits=limits, on_fetched=progress.advance)
    pages = dict(zip(urls, fetched, strict=True))
    completed = []
    for read in reads:
        teasers = wanted.get(read.source.name)
        if not teasers:
            completed.append(read)
            continue
        articles, failures = [], []
        teaser_ids = {article.id for article in teasers}
        for article in read.unseen:
            page = pages.get(article.url) if article.id in teaser_ids else None
            if page is None:
                articles.append(article)
                continue
            try:
                articles.append(with_page(article, _page_article(page, read.source.name)))
            except (SourceError, ExtractError) as error:
                failures.append(str(error))
                articles.append(article)
        outcome = read.outcome
        if failures:
            note = f"full text: {len(failures)} of {len(teasers)} pages failed ({failures[0]})"
            outcome = replace(outcome, defect="; ".join(filter(None, [outcome.defect, note])))
        completed.append(replace(read, outcome=outcome, unseen=tuple(articles)))
    return completed


def _page_article(page: Fetched | SourceError, source: str) -> Article:
    if isinstance(page, SourceError):
        raise page
    return extract_page(
        page.data,
        url=page.final_url or page.location,
        source=source,
        content_type=page.content_type,
    )


def with_page(item: Article, page: Article) -> Article:
    """The feed item with its page's full story; the feed's identity, title and date stay.

    The id is kept so that the next fetch of the feed recognises the item as already stored.
    """
    if len(page.text.split()) <= len(item.text.split()):
        return item
    return replace(
        item,
        text=page.text,
        html=page.html,
        summary=item.summary or page.summary,
        canonical_url=page.canonical_url or item.canonical_url,
        published=item.published or page.published,
        author=item.author or page.author,
        language=item.language or page.language,
        image=item.image or page.image,
    )


# --- learned boilerplate -------------------------------------------------------------------


def _without_boilerplate(
    store: Store, source: SourceConfig, articles: Sequence[Article], *, now: datetime
) -> list[Article]:
    """New articles with the paragraphs their source keeps repeating taken out."""
    if not articles:
        return []
    recurring = store.count_paragraphs(
        source.name,
        [paragraph_fingerprints(article) for article in articles],
        now=now,
        recurring_at=MIN_ARTICLES,
    )
    if recurring:
        log.info("source=%s drops %d recurring paragraphs", source.name, len(recurring))
    return [strip_boilerplate(article, recurring) for article in articles]
