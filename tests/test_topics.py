"""Tests for digest/topics.py: editor keyword rules, automatic sections, `digest group` input."""

from __future__ import annotations

import gzip
import json
import random
import time
from collections import defaultdict
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sklearn.metrics import adjusted_rand_score

from digest.errors import DigestError
from digest.models import Article, Section, Topic
from digest.topics import (
    OTHER_NEWS,
    articles_from_jsonl,
    group_by_topic,
    group_to_json,
    matches_topic,
)

pytestmark = pytest.mark.nodb  # the PostgreSQL pass skips it

CORPUS = Path(__file__).resolve().parents[1] / ".." / "shared" / "corpus"
BBC = CORPUS / "topics_bbc_news" / "bbc_news.jsonl.gz"
T0 = datetime(2026, 11, 25, 8, 0, tzinfo=UTC)


def article(
    id: str,
    title: str = "",
    text: str = "",
    *,
    summary: str = "",
    categories: tuple[str, ...] = (),
    published: datetime | None = T0,
) -> Article:
    return Article(
        id=id,
        url=f"https://example.org/{id}",
        title=title or f"Story {id}",
        text=text,
        source="test",
        published=published,
        summary=summary,
        categories=categories,
    )


def matches(keywords: tuple[str, ...], text: str, exclude: tuple[str, ...] = ()) -> bool:
    return matches_topic(article("a", "Headline", text), Topic("T", keywords, exclude))


# ---------------------------------------------------------------- keyword rules


def test_keyword_matches_whole_words_only():
    assert matches(("art",), "A new art gallery opens.")
    assert not matches(("art",), "The party met on Tuesday.")
    assert not matches(("art",), "Artificial turf is back.")


def test_keyword_matches_regular_plurals():
    assert matches(("vaccine",), "Two vaccines were approved.")
    assert matches(("policy",), "New policies on housing.")
    assert matches(("tax",), "Taxes rise in spring.")
    assert not matches(("vaccine",), "Vaccinations resume.")


def test_phrase_matches_across_whitespace_runs_and_pluralises_its_last_word():
    assert matches(("climate change",), "Effects of climate\n   change on crops")
    assert matches(("interest rate",), "Central banks raised interest  rates.")
    assert not matches(("climate change",), "The climate will change.")


def test_matching_ignores_case_and_is_unicode_aware():
    assert matches(("nato",), "NATO leaders meet in Wiesbaden.")
    assert matches(("café",), "CAFÉ CULTURE IN PARIS")
    assert matches(("straße",), "Neue STRASSE in Köln")
    # "ö" is a letter: the keyword "öl" is not a word inside "Heizöl".
    assert not matches(("öl",), "Der Heizölpreis steigt.")
    assert matches(("öl",), "Öl wird teurer.")


def test_keyword_with_symbols_at_its_edge_still_needs_word_boundaries():
    assert matches(("c++",), "Why C++ compilers are slow")
    assert not matches(("c++",), "ABC++ is a brand")


def test_exclude_keyword_vetoes_a_match():
    topic = Topic("Football", ("football",), exclude=("american football",))
    assert matches_topic(article("a", "Football", "The football season starts."), topic)
    assert not matches_topic(article("b", "Football", "American football returns."), topic)


def test_keywords_are_found_in_title_summary_and_categories():
    topic = Topic("Health", ("vaccine",))
    assert matches_topic(article("a", "Vaccine news"), topic)
    assert matches_topic(article("b", summary="A new vaccine."), topic)
    assert matches_topic(article("c", categories=("Vaccines",)), topic)
    assert not matches_topic(article("d", "Budget", "Nothing here."), topic)


def test_topic_without_keywords_matches_nothing():
    assert not matches_topic(article("a", "Anything", "at all"), Topic("Empty"))


# ---------------------------------------------------------------- editor sections


def test_article_matching_two_topics_goes_to_the_first_and_appears_once():
    both = article("both", "Vaccine tax", "A tax on vaccines.")
    topics = [Topic("Health", ("vaccine",)), Topic("Money", ("tax",))]
    sections = group_by_topic([both, article("tax", "Tax", "A tax.")], topics)
    assert [(s.label, [a.id for a in s.articles]) for s in sections] == [
        ("Health", ["both"]),
        ("Money", ["tax"]),
    ]
    reversed_sections = group_by_topic([both], list(reversed(topics)))
    assert [s.label for s in reversed_sections] == ["Money"]


def test_sections_follow_config_order_and_empty_topics_are_omitted():
    topics = [Topic("A", ("alpha",)), Topic("B", ("beta",)), Topic("C", ("gamma",))]
    found = group_by_topic([article("1", "gamma"), article("2", "alpha")], topics)
    assert [s.label for s in found] == ["A", "C"]


def test_articles_in_a_section_are_newest_first_undated_last_ties_by_title():
    topic = Topic("Space", ("moon",))
    articles = [
        article("undated", "A moon", published=None),
        article("old", "Moon old", published=T0 - timedelta(days=2)),
        article("new-b", "B moon", published=T0),
        article("new-a", "A moon", published=T0),
    ]
    (section,) = group_by_topic(articles, [topic])
    assert [a.id for a in section.articles] == ["new-a", "new-b", "old", "undated"]


def test_few_unclaimed_articles_go_to_other_news_unclustered():
    articles = [article(str(i), f"Unrelated item {i}", "words") for i in range(5)]
    sections = group_by_topic(articles, [Topic("Space", ("moon",))])
    assert [s.label for s in sections] == [OTHER_NEWS]
    assert len(sections[0].articles) == 5


def test_empty_input_gives_no_sections():
    assert group_by_topic([], [Topic("Space", ("moon",))]) == []
    assert group_by_topic([], []) == []


# ---------------------------------------------------------------- automatic sections

FOOTBALL = [
    "Arsenal beat Chelsea in the league match as the striker scored twice at the stadium.",
    "Liverpool striker scores late goal in league match against Everton at the stadium.",
    "Chelsea manager praises striker after league match win; the stadium roared.",
    "League leaders Arsenal sign a striker before the next match at their stadium.",
    "Everton and Liverpool draw a tense league match; the striker missed a penalty.",
    "Stadium sold out as the striker returns for the league match against Arsenal.",
]
ELECTION = [
    "Voters head to the polls as the election campaign ends; the candidate urges turnout.",
    "The candidate concedes the election after the ballot count; voters were split.",
    "Election officials count every ballot while voters wait for the candidate's speech.",
    "Polls show the candidate ahead as voters weigh the election and the ballot measures.",
    "Ballot papers printed for the election; voters and the candidate debate on television.",
    "Turnout among voters rose; the candidate claimed the election before the ballot count.",
]


def two_story_articles() -> list[Article]:
    return [article(f"f{i}", f"Match report {i}", text) for i, text in enumerate(FOOTBALL)] + [
        article(f"e{i}", f"Election report {i}", text) for i, text in enumerate(ELECTION)
    ]


def ids(section: Section) -> set[str]:
    return {a.id for a in section.articles}


def test_unclaimed_articles_are_clustered_into_labelled_sections():
    articles = [*two_story_articles(), article("x", "Recipe", "Bake the bread at a low heat.")]
    sections = group_by_topic(articles, [])
    by_label = {s.label: ids(s) for s in sections}
    assert {f"f{i}" for i in range(6)} in by_label.values()
    assert {f"e{i}" for i in range(6)} in by_label.values()
    assert by_label.get(OTHER_NEWS, set()) <= {"x"}
    for section in sections:
        if section.label != OTHER_NEWS:
            terms = section.label.split(" · ")
            assert 2 <= len(terms) <= 3
            assert all(term[:1].isupper() for term in terms)


def test_labels_name_what_the_cluster_is_about():
    sections = group_by_topic(two_story_articles(), [])
    labels = {frozenset(ids(s)): s.label.lower() for s in sections}
    football = labels[frozenset(f"f{i}" for i in range(6))]
    election = labels[frozenset(f"e{i}" for i in range(6))]
    assert any(word in football for word in ("striker", "league", "stadium", "match"))
    assert any(word in election for word in ("election", "ballot", "voters", "candidate"))


def test_editor_topics_come_before_automatic_sections_and_other_news_is_last():
    articles = [
        *two_story_articles(),
        article("moon", "Moon landing", "A probe lands on the moon."),
        article("bread", "Recipe", "Bake the bread at a low heat."),
    ]
    sections = group_by_topic(articles, [Topic("Space", ("moon",))])
    assert sections[0].label == "Space"
    assert ids(sections[0]) == {"moon"}
    assert sections[-1].label == OTHER_NEWS
    assert "bread" in ids(sections[-1])
    placed = [a.id for s in sections for a in s.articles]
    assert sorted(placed) == sorted(a.id for a in articles)


def test_forced_k_sets_the_number_of_automatic_sections():
    for k in (1, 2, 3):
        sections = group_by_topic(two_story_articles(), [], k=k)
        assert len(sections) == k
        assert OTHER_NEWS not in [s.label for s in sections]
        assert sum(len(s.articles) for s in sections) == 12
    # Three sections out of two stories: one story stays whole, the other is split.
    three = [ids(s) for s in group_by_topic(two_story_articles(), [], k=3)]
    assert {f"e{i}" for i in range(6)} in three or {f"f{i}" for i in range(6)} in three


def test_duplicate_articles_cluster_without_warnings():
    copies = [article(str(i), "Moon landing", "A probe lands on the moon today.") for i in range(8)]
    for k in (None, 3):
        (section,) = group_by_topic(copies, [], k=k)
        assert section.label != OTHER_NEWS
        assert len(section.articles) == 8


def test_forced_k_below_one_is_refused():
    with pytest.raises(DigestError, match="at least 1"):
        group_by_topic(two_story_articles(), [], k=0)


def test_grouping_is_deterministic_and_independent_of_input_order():
    articles = two_story_articles()
    first = group_by_topic(articles, [Topic("Space", ("moon",))])
    again = group_by_topic(articles, [Topic("Space", ("moon",))])
    shuffled = list(articles)
    random.Random(7).shuffle(shuffled)
    assert first == again
    assert group_by_topic(shuffled, [Topic("Space", ("moon",))]) == first


def test_group_to_json_lists_labels_and_article_ids_in_order():
    sections = [
        Section("Space", (article("a"), article("b"))),
        Section(OTHER_NEWS, (article("c"),)),
    ]
    assert group_to_json(sections) == {
        "topics": [
            {"label": "Space", "article_ids": ["a", "b"]},
            {"label": OTHER_NEWS, "article_ids": ["c"]},
        ]
    }


def bbc_sample(per_category: int) -> tuple[list[Article], dict[str, str]]:
    """The first `per_category` articles of each category, exact duplicates removed."""
    seen: set[str] = set()
    chosen: dict[str, list[dict]] = defaultdict(list)
    with gzip.open(BBC, "rt", encoding="utf-8") as lines:
        for line in lines:
            row = json.loads(line)
            if row["text"] in seen or len(chosen[row["category"]]) >= per_category:
                continue
            seen.add(row["text"])
            chosen[row["category"]].append(row)
    rows = [row for category in sorted(chosen) for row in chosen[category]]
    articles = [
        Article(id=r["id"], url="", title=r["title"], text=r["text"], source="bbc") for r in rows
    ]
    return articles, {r["id"]: r["category"] for r in rows}


@pytest.mark.skipif(not BBC.exists(), reason=f"BBC News corpus not found at {BBC}")
def test_automatic_sections_recover_bbc_news_categories():
    articles, truth = bbc_sample(40)
    assert len(articles) == 200
    started = time.perf_counter()
    sections = group_by_topic(articles, [])
    elapsed = time.perf_counter() - started
    predicted = {a.id: index for index, s in enumerate(sections) for a in s.articles}
    order = sorted(truth)
    ari = adjusted_rand_score([truth[i] for i in order], [predicted[i] for i in order])
    print(f"BBC 5x40: k={len(sections)} ARI={ari:.3f} in {elapsed:.2f}s")
    assert sorted(predicted) == order
    assert ari >= 0.6, f"ARI {ari:.3f} with k={len(sections)}: {[s.label for s in sections]}"
    assert 3 <= len(sections) <= 11  # 3-10 automatic sections, perhaps Other news
    for section in sections:
        if section.label != OTHER_NEWS:
            assert " · " in section.label
            assert all(term.strip() for term in section.label.split(" · "))


@pytest.mark.skipif(not BBC.exists(), reason=f"BBC News corpus not found at {BBC}")
def test_real_articles_group_the_same_whatever_their_order():
    articles, _ = bbc_sample(12)
    shuffled = list(articles)
    random.Random(7).shuffle(shuffled)
    first = group_by_topic(articles, [])
    assert len(first) > 2
    assert group_by_topic(shuffled, []) == first


# ---------------------------------------------------------------- `digest group` input


def test_jsonl_lines_become_articles_with_optional_fields():
    text = "\n".join(
        [
            json.dumps({"id": "a", "title": "T", "text": "Body"}),
            "",
            "   ",
            json.dumps(
                {
                    "id": 7,
                    "title": "Second",
                    "text": "More",
                    "url": "https://example.org/x",
                    "source": "wire",
                    "categories": ["Politics"],
                    "published": "2026-11-25T10:00:00+01:00",
                    "label": "ignored extra key",
                }
            ),
            json.dumps({"id": "c", "title": "Third", "text": "", "published": "2026-11-25T10:00Z"}),
            json.dumps({"id": "d", "title": "Naive", "text": "x", "published": "2026-11-25 10:00"}),
        ]
    )
    first, second, third, naive = articles_from_jsonl(text, source="stdin")
    assert (first.id, first.title, first.text, first.source, first.published) == (
        "a",
        "T",
        "Body",
        "stdin",
        None,
    )
    assert second.id == "7"
    assert second.source == "wire"
    assert second.url == "https://example.org/x"
    assert second.categories == ("Politics",)
    assert second.published == datetime(2026, 11, 25, 9, 0, tzinfo=UTC)
    assert third.published == datetime(2026, 11, 25, 10, 0, tzinfo=UTC)
    assert naive.published == datetime(2026, 11, 25, 10, 0, tzinfo=UTC)


def test_jsonl_strings_may_hold_unicode_line_separators():
    text = json.dumps({"id": "a", "title": "One\u2028Two", "text": "x"}, ensure_ascii=False)
    assert "\u2028" in text
    (only,) = articles_from_jsonl(text + "\r\n")
    assert only.title == "One\u2028Two"


@pytest.mark.parametrize(
    ("bad_line", "problem"),
    [
        ("{not json", "line 2: not valid JSON"),
        ("[1, 2]", "line 2: expected a JSON object, got list"),
        ('{"id": "b", "text": "x"}', 'line 2: missing "title"'),
        ('{"id": "b", "title": "x"}', 'line 2: missing "text"'),
        ('{"title": "x", "text": "y"}', 'line 2: "id" must be'),
        ('{"id": "b", "title": 5, "text": "y"}', 'line 2: "title" must be a string, not int'),
        ('{"id": "b", "title": "x", "text": "y", "published": "soon"}', 'line 2: "published"'),
        ('{"id": "b", "title": "x", "text": "y", "categories": "news"}', 'line 2: "categories"'),
        ('{"id": "a", "title": "x", "text": "y"}', "line 2: duplicate id 'a'"),
    ],
)
def test_a_bad_jsonl_line_is_reported_by_number_on_one_line(bad_line: str, problem: str):
    text = json.dumps({"id": "a", "title": "T", "text": "Body"}) + "\n" + bad_line + "\n"
    with pytest.raises(DigestError) as caught:
        articles_from_jsonl(text)
    message = str(caught.value)
    assert message.startswith(problem)
    assert "\n" not in message


# ---------------------------------------------------------------- categories and sources


def test_a_topic_claims_articles_by_feed_category_caselessly():
    topic = Topic("Sport", categories=("Football",))
    assert matches_topic(article("a", "Cup final", categories=("FOOTBALL",)), topic)
    assert not matches_topic(article("b", "Cup final", categories=("Cricket",)), topic)


def test_a_topic_claims_every_article_of_its_sources_by_name_or_shown_name():
    topic = Topic("From the wire", sources=("valley-wire",))
    wired = replace(article("a", "Anything at all"), origin="valley-wire", source="Valley Wire")
    shown = replace(article("b", "Anything at all"), origin="other", source="VALLEY-WIRE")
    other = replace(article("c", "Anything at all"), origin="courier", source="Courier")
    assert matches_topic(wired, topic) and matches_topic(shown, topic)
    assert not matches_topic(other, topic)


def test_exclude_vetoes_a_source_or_category_claim_too():
    topic = Topic("Sport", exclude=("mayoral race",), categories=("Sport",))
    vetoed = article("a", "The mayoral race tightens", categories=("Sport",))
    assert not matches_topic(vetoed, topic)


def test_first_topic_by_priority_wins_whatever_claims_it():
    by_source = Topic("Wire", sources=("wire",))
    by_keyword = Topic("Floods", keywords=("flood",))
    story = replace(article("a", "Flood barrier opens"), origin="wire")
    sections = group_by_topic([story], [by_keyword, by_source])
    assert [s.label for s in sections] == ["Floods"]
    sections = group_by_topic([story], [by_source, by_keyword])
    assert [s.label for s in sections] == ["Wire"]
