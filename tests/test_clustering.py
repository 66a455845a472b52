"""Tests for digest/clustering.py: automatic sections, the choice of k, labels, the embed hook."""

from __future__ import annotations

import gzip
import json
import random
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest
from sklearn.metrics import adjusted_rand_score

from digest.clustering import LABEL_SEPARATOR, MAX_SECTIONS, cluster_articles
from digest.models import Article, Section

pytestmark = pytest.mark.nodb  # the PostgreSQL pass skips it

CORPUS = Path(__file__).resolve().parents[1] / ".." / "shared" / "corpus"
BBC = CORPUS / "topics_bbc_news" / "bbc_news.jsonl.gz"
AG = CORPUS / "topics_ag_news_test" / "ag_news_test.jsonl.gz"
WIKIREF = CORPUS / "stories_wikiref220" / "wikiref220.jsonl"

# fmt: off
STORIES = {
    "space": ["rocket", "orbit", "astronaut", "launch", "satellite", "capsule", "telescope",
              "lunar"],
    "football": ["striker", "league", "goal", "stadium", "midfielder", "coach", "penalty",
                 "referee"],
    "election": ["ballot", "voters", "candidate", "campaign", "polls", "turnout", "parliament",
                 "senate"],
    "markets": ["shares", "investors", "stocks", "bond", "inflation", "dividend", "earnings",
                "traders"],
    "weather": ["storm", "rainfall", "flooding", "hurricane", "forecast", "winds", "drought",
                "snowfall"],
    "health": ["vaccine", "hospital", "patients", "virus", "doctors", "clinic", "nurses",
               "infection"],
    "cinema": ["film", "actor", "director", "premiere", "oscar", "screenplay", "cinema",
               "studio"],
    "farming": ["harvest", "wheat", "cattle", "tractor", "farmers", "crops", "fertiliser",
                "barley"],
    "music": ["album", "guitarist", "concert", "singer", "band", "chart", "tour", "lyrics"],
    "courts": ["judge", "trial", "jury", "verdict", "lawyers", "appeal", "prosecutor",
               "sentencing"],
    "rail": ["train", "railway", "station", "commuters", "tracks", "signals", "carriages",
             "timetable"],
    "chess": ["grandmaster", "opening", "endgame", "bishop", "rook", "checkmate", "gambit",
              "pawn"],
}
FILLER = ["report", "people", "city", "officials", "morning", "plan", "group", "country",
          "public", "local", "week", "statement", "question", "future", "result", "team"]
# fmt: on


def story_articles(stories: Sequence[str], per_story: int, seed: int = 1) -> list[Article]:
    """`per_story` articles for each story: five of its words and three common ones, shuffled."""
    rng = random.Random(seed)
    articles = []
    for story in stories:
        for index in range(per_story):
            words = rng.sample(STORIES[story], 5) + rng.sample(FILLER, 3)
            rng.shuffle(words)
            articles.append(
                Article(
                    id=f"{story}-{index:02d}",
                    url=f"https://example.org/{story}/{index}",
                    title=" ".join(words[:4]).capitalize(),
                    text=" ".join(words).capitalize() + ".",
                    source="test",
                )
            )
    return articles


def story_of(article: Article) -> str:
    return article.id.split("-")[0]


def groups(sections: Sequence[Section]) -> set[frozenset[str]]:
    return {frozenset(a.id for a in s.articles) for s in sections}


def story_groups(articles: Sequence[Article]) -> set[frozenset[str]]:
    stories = {story_of(a) for a in articles}
    return {frozenset(a.id for a in articles if story_of(a) == s) for s in stories}


# ---------------------------------------------------------------- determinism


def test_sections_labels_and_order_do_not_depend_on_input_order():
    articles = story_articles(["space", "football", "election"], 8)
    first = cluster_articles(articles)
    assert len(first[0]) >= 2
    shuffled = list(articles)
    random.Random(7).shuffle(shuffled)
    assert cluster_articles(shuffled) == first


def test_duplicate_articles_land_in_one_section():
    articles = story_articles(["space", "football", "election"], 10)
    copies = [
        Article(
            id=f"space-copy-{i}",
            url="",
            title=articles[0].title,
            text=articles[0].text,
            source="wire",
        )
        for i in range(3)
    ]
    sections, _ = cluster_articles(articles + copies, 3)
    (home,) = [s for s in sections if articles[0] in s.articles]
    assert set(copies) <= set(home.articles)


# ---------------------------------------------------------------- the number of sections


def test_clear_stories_are_recovered_without_being_told_k():
    articles = story_articles(["space", "football", "election", "markets", "weather"], 8)
    sections, leftovers = cluster_articles(articles)
    assert groups(sections) == story_groups(articles)
    assert leftovers == []


def test_many_stories_give_at_most_ten_sections():
    articles = story_articles(list(STORIES), 6)
    assert len(articles) == 72
    sections, leftovers = cluster_articles(articles)
    assert 3 <= len(sections) <= MAX_SECTIONS
    placed = [a.id for s in sections for a in s.articles] + [a.id for a in leftovers]
    assert sorted(placed) == sorted(a.id for a in articles)


def test_enough_articles_are_split_at_least_three_ways():
    # Two stories, 40 articles: the lower bound of 3 holds once there are enough.
    articles = story_articles(["space", "football"], 20)
    sections, leftovers = cluster_articles(articles)
    clusters = len(sections) + len(leftovers)  # a cluster of one leaves one article over
    assert clusters >= 3


def test_a_small_input_may_have_two_sections():
    articles = story_articles(["space", "football"], 6)
    sections, leftovers = cluster_articles(articles)
    assert groups(sections) == story_groups(articles)
    assert leftovers == []


def test_forced_k_overrides_the_bounds():
    articles = story_articles(["space", "football"], 20)
    (everything,), _ = cluster_articles(articles, 1)
    assert len(everything.articles) == 40
    sections, leftovers = cluster_articles(articles, 12)
    assert len(sections) + len(leftovers) >= 12


# ---------------------------------------------------------------- labels


def test_labels_are_three_distinctive_terms_of_their_story():
    articles = story_articles(["space", "football", "election", "markets"], 10)
    sections, _ = cluster_articles(articles, 4)
    assert groups(sections) == story_groups(articles)
    for section in sections:
        (story,) = {story_of(a) for a in section.articles}
        terms = section.label.split(LABEL_SEPARATOR)
        assert len(terms) == 3
        assert all(term == term.lower().title() for term in terms)
        assert {term.lower() for term in terms} <= set(STORIES[story])


def test_labels_skip_reporting_words_entity_leftovers_and_wire_credits():
    # Only the election story carries them, so without the stop list they would be distinctive.
    articles = [
        a
        if story_of(a) != "election"
        else Article(
            id=a.id,
            url=a.url,
            title=a.title,
            source=a.source,
            text=f"WASHINGTON (Reuters) - {a.text} officials said &lt;b&gt;AP&lt;/b&gt;",
        )
        for a in story_articles(["space", "football", "election"], 10)
    ]
    sections, _ = cluster_articles(articles, 3)
    (election,) = [s for s in sections if story_of(s.articles[0]) == "election"]
    label = election.label.lower().split(LABEL_SEPARATOR)
    assert not {"reuters", "said", "lt", "gt", "ap"} & set(label)
    assert set(label) <= set(STORIES["election"]) | {"washington"}


# ---------------------------------------------------------------- the embed hook


class FakeEmbed:
    """Deterministic vectors: a fixed direction per marker word found in the text."""

    def __init__(self, markers: dict[str, Sequence[float]], lengths: Sequence[float] = (1.0,)):
        self.markers = markers
        self.lengths = lengths
        self.calls: list[list[str]] = []

    def __call__(self, texts: Sequence[str]) -> np.ndarray:
        self.calls.append(list(texts))
        rows = []
        for index, text in enumerate(texts):
            (direction,) = [v for word, v in self.markers.items() if word in text.split()]
            rows.append(np.asarray(direction) * self.lengths[index % len(self.lengths)])
        return np.vstack(rows)


def marked_articles() -> list[Article]:
    """Space and football stories, each half "morning" and half "evening" in the headline."""
    articles = story_articles(["space", "football"], 6)
    return [
        Article(
            id=a.id,
            url=a.url,
            title=f"{'morning' if i % 2 else 'evening'} {a.title}",
            text=a.text,
            source=a.source,
        )
        for i, a in enumerate(articles)
    ]


def edition_groups(articles: Sequence[Article]) -> set[frozenset[str]]:
    return {
        frozenset(a.id for a in articles if a.title.split()[0] == edition)
        for edition in ("morning", "evening")
    }


def test_embed_vectors_replace_the_text_space_for_clustering():
    articles = marked_articles()
    embed = FakeEmbed({"morning": (1.0, 0.0, 0.0), "evening": (0.0, 1.0, 0.0)})
    by_text, _ = cluster_articles(articles, 2)
    by_embedding, _ = cluster_articles(articles, 2, embed=embed)
    assert groups(by_text) == story_groups(articles)
    assert groups(by_embedding) == edition_groups(articles)
    # Labels still come from the words: the embedding's two groups differ by their edition.
    assert {s.label.split(LABEL_SEPARATOR)[0] for s in by_embedding} == {"Morning", "Evening"}


def test_embed_is_called_once_with_one_headline_first_text_per_article():
    articles = marked_articles()
    embed = FakeEmbed({"morning": (1.0, 0.0), "evening": (0.0, 1.0)})
    cluster_articles(articles, embed=embed)
    (texts,) = embed.calls
    assert sorted(texts) == sorted(f"{a.title}\n{a.text}" for a in articles)


def test_embed_rows_are_normalised_so_only_their_direction_counts():
    articles = marked_articles()
    markers = {"morning": (1.0, 0.0), "evening": (0.0, 1.0)}
    # Lengths 1 and 10 alternate: raw k-means would split far rows from near ones.
    scaled = FakeEmbed(markers, lengths=(1.0, 1.0, 10.0, 10.0))
    unit = FakeEmbed(markers)
    sections, _ = cluster_articles(articles, 2, embed=scaled)
    assert groups(sections) == edition_groups(articles)
    assert cluster_articles(articles, embed=scaled) == cluster_articles(articles, embed=unit)


def test_embed_results_do_not_depend_on_input_order():
    articles = marked_articles()
    embed = FakeEmbed({"morning": (1.0, 0.2), "evening": (0.1, 1.0)})
    shuffled = list(articles)
    random.Random(3).shuffle(shuffled)
    assert cluster_articles(shuffled, embed=embed) == cluster_articles(articles, embed=embed)


def test_embed_returning_the_wrong_shape_is_refused():
    articles = marked_articles()
    with pytest.raises(ValueError, match="embed returned shape"):
        cluster_articles(articles, embed=lambda texts: np.zeros((len(texts) - 1, 4)))


# ---------------------------------------------------------------- real corpora


def _gzip_rows(path: Path) -> list[dict]:
    with gzip.open(path, "rt", encoding="utf-8") as lines:
        return [json.loads(line) for line in lines]


def ari_of(articles: Sequence[Article], truth: dict[str, str], k: int | None = None) -> tuple:
    sections, leftovers = cluster_articles(articles, k)
    predicted = {a.id: i for i, s in enumerate(sections) for a in s.articles}
    predicted.update({a.id: -1 for a in leftovers})
    ids = sorted(truth)
    score = adjusted_rand_score([truth[i] for i in ids], [predicted[i] for i in ids])
    return score, sections


@pytest.mark.skipif(not BBC.exists(), reason=f"BBC News corpus not found at {BBC}")
def test_bbc_news_sample_recovers_its_five_categories():
    rows, seen = [], set()
    for row in _gzip_rows(BBC):
        if row["text"] not in seen:
            seen.add(row["text"])
            rows.append(row)
    rows = random.Random(0).sample(rows, 400)
    articles = [Article(r["id"], "", r["title"], r["text"], "bbc") for r in rows]
    score, sections = ari_of(articles, {r["id"]: r["category"] for r in rows})
    # Measured 0.917 with k = 5 (bench/bench_topics.py: 0.87-0.93 on other samples).
    assert score >= 0.85, [s.label for s in sections]
    assert len(sections) == 5


@pytest.mark.slow
@pytest.mark.skipif(not WIKIREF.exists(), reason=f"WikiRef220 not found at {WIKIREF}")
def test_wikiref_main_stories_each_get_one_section():
    rows = [json.loads(line) for line in WIKIREF.read_text(encoding="utf-8").splitlines()]
    rows = [r for r in rows if not r["is_noise"]]
    articles = [Article(r["id"], "", r["title"], r["text"], "w") for r in rows]
    score, sections = ari_of(articles, {r["id"]: r["topic"] for r in rows})
    assert score >= 0.95  # measured 1.000
    assert len(sections) == 5


@pytest.mark.slow
@pytest.mark.skipif(not AG.exists(), reason=f"AG News corpus not found at {AG}")
def test_ag_news_sample_is_grouped_into_its_four_topics():
    rows = random.Random(0).sample(_gzip_rows(AG), 2000)
    articles = [Article(r["id"], "", r["title"], r["description"], "ag") for r in rows]
    score, sections = ari_of(articles, {r["id"]: r["category"] for r in rows})
    assert score >= 0.5, [s.label for s in sections]  # measured 0.579 with k = 4
    assert len(sections) == 4
