"""Tests for digest/embeddings.py: the model bundled by the optional `[embeddings]` extra."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from sklearn.metrics import adjusted_rand_score

from digest.clustering import cluster_articles
from digest.embeddings import (
    INSTALL_HINT,
    EmbeddingsUnavailable,
    StaticEmbedder,
    embedder_from_files,
    extra_installed,
    load_embedder,
    require_embedder,
)
from digest.errors import ConfigError
from tests.test_topics import bbc_sample

CORPUS = Path(__file__).resolve().parents[1] / ".." / "shared" / "corpus"
BBC = CORPUS / "topics_bbc_news" / "bbc_news.jsonl.gz"
NOT_INSTALLED = f"the optional [embeddings] extra is not installed ({INSTALL_HINT})"

needs_extra = pytest.mark.skipif(not extra_installed(), reason=NOT_INSTALLED)


@pytest.fixture(scope="module")
def embedder() -> StaticEmbedder:
    if not extra_installed():
        pytest.skip(NOT_INSTALLED)
    loaded = load_embedder()
    assert loaded is not None
    return loaded


# ---------------------------------------------------------------- without the extra


def test_a_missing_model_file_is_named_in_a_config_error(tmp_path: Path):
    weights, tokenizer = tmp_path / "table.safetensors", tmp_path / "tokenizer.json"
    tokenizer.write_text("{}")
    with pytest.raises(EmbeddingsUnavailable, match="table.safetensors") as raised:
        embedder_from_files(weights, tokenizer)
    assert isinstance(raised.value, ConfigError)


@pytest.mark.skipif(extra_installed(), reason="the [embeddings] extra is installed")
def test_without_the_extra_there_is_no_embedder_and_requiring_one_says_how_to_install():
    assert load_embedder() is None
    with pytest.raises(EmbeddingsUnavailable, match=r"pip install 'digest\[embeddings\]'"):
        require_embedder()


# ---------------------------------------------------------------- with the extra


def test_one_unit_float32_row_per_text(embedder: StaticEmbedder):
    texts = ["Stocks fell on Wall Street.", "Rain is expected tomorrow.", "Ça va très bien."]
    vectors = embedder(texts)
    assert vectors.shape == (3, embedder.dimensions) == (3, 256)
    assert vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, rtol=1e-5)
    assert embedder([]).shape == (0, 256)


def test_a_text_without_tokens_gets_a_zero_row(embedder: StaticEmbedder):
    vectors = embedder(["", "Elections"])
    assert not vectors[0].any()
    assert vectors[1].any()


def test_vectors_are_deterministic_and_independent_of_the_other_texts(
    embedder: StaticEmbedder,
):
    texts = [
        "Central bank raises interest rates again",
        "A much longer text about football, the league table and a late winning goal " * 20,
        "Short",
    ]
    together = embedder(texts)
    reversed_rows = embedder(texts[::-1])[::-1]
    alone = np.vstack([embedder([text]) for text in texts])
    assert np.array_equal(together, reversed_rows)
    assert np.array_equal(together, alone)
    load_embedder.cache_clear()
    reloaded = load_embedder()
    assert reloaded is not None and reloaded is not embedder
    assert np.array_equal(reloaded(texts), together)


def test_require_embedder_returns_the_loaded_model(embedder: StaticEmbedder):
    assert require_embedder() is load_embedder()


# Four topics in words that mostly differ within a topic: closeness must come from meaning.
TOPIC_SENTENCES = {
    "sport": [
        "The goalkeeper saved a penalty in extra time",
        "The striker scored twice in the cup final",
        "The team won the championship match on Sunday",
        "The coach was sacked after five straight defeats",
    ],
    "markets": [
        "Shares tumbled as investors fled the stock market",
        "Equity prices dropped sharply on Wall Street",
        "The central bank raised interest rates by half a point",
        "Oil prices rose as inflation fears grew",
    ],
    "politics": [
        "The prime minister called an early general election",
        "Voters will choose a new parliament next month",
        "Parliament passed the budget bill after a long debate",
        "The opposition leader attacked the government's plans",
    ],
    "technology": [
        "Researchers released a faster computer chip",
        "The software update improves the laptop's battery life",
        "The new smartphone has a better camera",
        "The app lets users back up their photos to the cloud",
    ],
}


def test_each_sentence_is_closer_to_its_own_topic_than_to_the_others(
    embedder: StaticEmbedder,
):
    topics = [topic for topic, sentences in TOPIC_SENTENCES.items() for _ in sentences]
    texts = [sentence for sentences in TOPIC_SENTENCES.values() for sentence in sentences]
    similarity = embedder(texts) @ embedder(texts).T
    for i, text in enumerate(texts):
        same = [similarity[i, j] for j in range(len(texts)) if j != i and topics[j] == topics[i]]
        other = [similarity[i, j] for j in range(len(texts)) if topics[j] != topics[i]]
        assert np.mean(same) > np.mean(other) + 0.05, (text, np.mean(same), np.mean(other))


@needs_extra
@pytest.mark.skipif(shutil.which("unshare") is None, reason="util-linux unshare is not installed")
def test_loads_and_embeds_with_no_network_and_leaves_logging_alone(tmp_path: Path):
    script = (
        "import logging, sys\n"
        "from digest.embeddings import require_embedder\n"
        "vectors = require_embedder()(['offline sentence'])\n"
        "assert vectors.shape == (1, 256), vectors.shape\n"
        # Importing wordllama itself would install a root log handler (logging.basicConfig).
        "assert not logging.getLogger().handlers, logging.getLogger().handlers\n"
        "assert 'wordllama' not in sys.modules\n"
        "print('ok')\n"
    )
    # A fresh network namespace has only a down loopback: any fetch would fail at once.
    probe = subprocess.run(["unshare", "--net", "true"], capture_output=True)
    if probe.returncode != 0:
        pytest.skip(f"cannot make a network namespace: {probe.stderr.decode().strip()}")
    env = {"HF_HUB_OFFLINE": "1", "HOME": str(tmp_path), "PATH": "/usr/bin:/bin"}
    done = subprocess.run(
        ["unshare", "--net", sys.executable, "-c", script],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "ok"
    assert not any(tmp_path.iterdir()), "nothing may be cached under HOME"


@pytest.mark.skipif(not BBC.exists(), reason=f"BBC News corpus not found at {BBC}")
def test_embedding_space_separates_bbc_news_categories(embedder: StaticEmbedder):
    articles, truth = bbc_sample(40)
    # k forced: this tests the vectors, not how the number of sections is chosen.
    sections, leftovers = cluster_articles(articles, 5, embed=embedder)
    predicted = {a.id: index for index, s in enumerate(sections) for a in s.articles}
    predicted |= {a.id: -1 for a in leftovers}
    order = sorted(truth)
    ari = adjusted_rand_score([truth[i] for i in order], [predicted[i] for i in order])
    assert ari >= 0.75, f"ARI {ari:.3f} with k={len(sections)}: {[s.label for s in sections]}"
