"""Tests for digest/ingest/dedupe.py: one story, one article, however many feeds carried it."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

from digest.ingest.dedupe import dedupe
from digest.models import Article, article_id

STORY = (
    "NATO Secretary General Mark Rutte has reaffirmed the alliance's unwavering support for "
    "Ukraine during his first visit to the alliance's Ukraine mission headquarters in Wiesbaden, "
    "Germany. The visit highlighted the commitment to coordinating Western military aid to Kyiv "
    "and its stance against Russian threats. Rutte also welcomed the decision to deploy "
    "long-range missiles to Germany temporarily from 2026."
)
OTHER_STORY = (
    "The city council voted on Tuesday to extend the tram line to the northern districts, a "
    "project that residents have been requesting for more than a decade and that planners say "
    "will cut commuting times by a third once the new stops open in the spring of next year."
)


def _article(source: str, url: str, title: str, text: str = "", guid: str = "") -> Article:
    return Article(
        id=article_id(url or guid), url=url, title=title, text=text, source=source, guid=guid
    )


def test_same_url_from_several_sources_collapses_into_the_first() -> None:
    articles = [
        _article("reuters", "https://news.example/rutte?utm_source=rss", "Rutte visits Wiesbaden"),
        _article("tram", "https://city.example/tram", "Council extends tram line", OTHER_STORY),
        _article("aggregator", "https://NEWS.example/rutte#top", "Rutte in Wiesbaden (wire)"),
        _article("blog", "https://news.example/rutte", "NATO head visits base"),
    ]
    kept = dedupe(articles)
    assert [a.source for a in kept] == ["reuters", "tram"]
    assert kept[0].also_in == ("aggregator", "blog")
    assert kept[0].title == "Rutte visits Wiesbaden"
    assert kept[1].also_in == ()


def test_url_like_guid_matches_across_sources_but_plain_guid_only_within_one() -> None:
    articles = [
        _article("a", "", "First item title here", "text one", guid="tag:site.example,2024:1"),
        _article("b", "", "Renamed item title now", "text two", guid="tag:site.example,2024:1"),
        _article("a", "", "Story number one today", STORY, guid="42"),
        _article("b", "", "Other news about trams", OTHER_STORY, guid="42"),
    ]
    kept = dedupe(articles)
    assert [(a.source, a.also_in) for a in kept] == [("a", ("b",)), ("a", ()), ("b", ())]


def test_lightly_rewritten_syndicated_title_collapses() -> None:
    articles = [
        _article("wire", "https://wire.example/1", "Rutte: NATO will do what's necessary", STORY),
        _article(
            "paper",
            "https://paper.example/world/99",
            "NATO's Rutte: NATO will do what is necessary",
            STORY.replace("unwavering ", "").replace("temporarily ", ""),
        ),
    ]
    kept = dedupe(articles)
    assert len(kept) == 1
    assert kept[0].also_in == ("paper",)


def test_retitled_copy_with_the_same_long_text_collapses() -> None:
    long_story = " ".join([STORY, OTHER_STORY])
    articles = [
        _article("a", "https://a.example/1", "Tory backing for ID cards", long_story),
        _article("b", "https://b.example/2", "Conservative backing for ID cards", long_story),
    ]
    assert [a.also_in for a in dedupe(articles)] == [("b",)]


def test_different_stories_stay_apart() -> None:
    articles = [
        _article("a", "https://a.example/1", "Rutte visits NATO mission in Wiesbaden", STORY),
        _article("b", "https://b.example/2", "Council extends tram line north", OTHER_STORY),
        # Same words in the title, different story in the text: the text decides.
        _article("c", "https://c.example/3", "Rutte visits NATO mission in Wiesbaden", OTHER_STORY),
        # Short generic titles say too little to match on.
        _article("d", "https://d.example/4", "Today's schedule"),
        _article("e", "https://e.example/5", "Today's schedule"),
    ]
    assert [a.source for a in dedupe(articles)] == ["a", "b", "c", "d", "e"]


def test_duplicates_within_one_source_do_not_name_it_again() -> None:
    articles = [
        _article("feed", "https://x.example/1", "One story told twice over", STORY),
        _article("feed", "https://x.example/1", "One story told twice over", STORY),
        _article("other", "https://y.example/9", "One story told twice over", STORY),
        _article("other", "https://y.example/9", "One story told twice over", STORY),
    ]
    kept = dedupe(articles)
    assert len(kept) == 1
    assert kept[0].also_in == ("other",)


def test_dedupe_is_deterministic_and_keeps_input_order() -> None:
    articles = [
        _article(f"s{n % 3}", f"https://x.example/{n % 4}", f"Story number {n % 4} of today")
        for n in range(12)
    ]
    first = dedupe(articles)
    assert first == dedupe(articles)
    assert [a.url for a in first] == [f"https://x.example/{n}" for n in range(4)]
    assert dedupe([]) == []


def test_titles_that_differ_in_a_number_are_different_stories() -> None:
    articles = [
        _article("a", "https://a.example/1", "Acme reports record profit in Q3 2024"),
        _article("b", "https://b.example/2", "Acme reports record profit in Q4 2024"),
        _article("c", "https://c.example/3", "Acme reports record profit in the Q3 2024"),
    ]
    assert [(a.source, a.also_in) for a in dedupe(articles)] == [("a", ("c",)), ("b", ())]


def test_bbc_duplicate_pairs_collapse_and_distinct_articles_survive(corpus: Path) -> None:
    with gzip.open(corpus / "topics_bbc_news/bbc_news.jsonl.gz", "rt", encoding="utf-8") as lines:
        rows = [json.loads(line) for line in lines]
    with (corpus / "dedup_pairs/bbc_news_pairs.jsonl").open(encoding="utf-8") as lines:
        labelled = [json.loads(line) for line in lines]
    articles = [
        _article(row["id"], f"https://bbc.example/{row['id']}", row["title"], row["text"])
        for row in rows
    ]
    kept = dedupe(articles)
    groups = [(a.source, *a.also_in) for a in kept if a.also_in]
    group_of = {name: group[0] for group in groups for name in group}
    ids = {row["id"] for row in rows}
    pairs = {(p["a"], p["b"]): p["silver_label"] for p in labelled if {p["a"], p["b"]} <= ids}
    duplicates = [ab for ab, label in pairs.items() if label.endswith("_duplicate")]
    missed = [(a, b) for a, b in duplicates if group_of.get(a, a) != group_of.get(b, b)]
    assert len(duplicates) > 80
    assert missed == []
    # Precision: articles merged together were labelled as overlapping (any label), give or
    # take a pair or two that the silver labels missed.
    merged = [(a, b) for group in groups for a in group for b in group if a < b]
    unlabelled = [ab for ab in merged if ab not in pairs and ab[::-1] not in pairs]
    assert len(merged) > 80
    assert len(unlabelled) <= 2
