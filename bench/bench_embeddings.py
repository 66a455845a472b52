"""Grouping by embeddings against TF-IDF/LSA: `python bench/bench_embeddings.py [--quick]`.

Measures, in one run on this machine, with the number of sections chosen by the system:
- ARI and NMI of `cluster_articles` on ../shared/corpus/topics_ag_news_test (a fixed-seed sample
  of 2000 and, unless --quick, all 5000) and topics_bbc_news (all 1680), once with the default
  TF-IDF/LSA space (the in-run reference) and once with `embed=` the bundled model. Articles
  left in no section count as one more group ("Other news"), as a reader sees them;
- the same on digest-sized inputs: mean ARI over 5 fixed-seed samples of 200 articles per set;
- embedding speed (texts/s, ms per 1000 texts) on the texts `cluster_articles` embeds, against
  TF-IDF vectorising the same texts as the reference, and the model's load time;
- the extra's installed size (its distributions' files) and the model file's size.

Needs the `[embeddings]` extra. When this interpreter lacks it, the script installs it in a venv
under /tmp/digest-bench (which sees this interpreter's packages, digest included) and re-runs
itself there; `pip install -e '.[embeddings]'` avoids that.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import importlib.util
import os
import random
import statistics
import subprocess
import sys
import time
import tomllib
import venv
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import date
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import bench_topics as topic_corpora  # noqa: E402  (the same corpus loaders, beside this file)
import numpy as np  # noqa: E402
from bench_topics import Labelled  # noqa: E402
from sklearn.feature_extraction.text import TfidfVectorizer  # noqa: E402
from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score  # noqa: E402

from digest.clustering import cluster_articles, embedding_text  # noqa: E402
from digest.embeddings import (  # noqa: E402
    MODEL_PACKAGE,
    WEIGHTS_FILE,
    extra_installed,
    load_embedder,
)

BENCH_VENV = Path("/tmp/digest-bench/embeddings-venv")
SEED = 0
AG_SAMPLE = 2000
SMALL_SAMPLE, SMALL_SEEDS = 200, 5

Embed = Callable[[Sequence[str]], np.ndarray]


def ag_news() -> Labelled:
    return replace(topic_corpora.ag_news(), name="AG News")


def bbc_news() -> Labelled:
    return replace(topic_corpora.bbc_news(drop_duplicates=False), name="BBC")


def sample(data: Labelled, size: int, seed: int) -> Labelled:
    chosen = random.Random(seed).sample(data.articles, size)
    truth = {a.id: data.truth[a.id] for a in chosen}
    return Labelled(f"{data.name} {size} (seed {seed})", chosen, truth)


@dataclass(frozen=True)
class Score:
    sections: int
    leftovers: int
    ari: float
    nmi: float
    seconds: float


def score(data: Labelled, embed: Embed | None) -> Score:
    started = time.perf_counter()
    sections, leftovers = cluster_articles(data.articles, embed=embed)
    seconds = time.perf_counter() - started
    predicted = {a.id: index for index, s in enumerate(sections) for a in s.articles}
    predicted |= {a.id: -1 for a in leftovers}
    order = sorted(data.truth)
    truth = [data.truth[i] for i in order]
    guess = [predicted[i] for i in order]
    return Score(
        sections=len(sections),
        leftovers=len(leftovers),
        ari=adjusted_rand_score(truth, guess),
        nmi=normalized_mutual_info_score(truth, guess),
        seconds=seconds,
    )


def best_of(runs: int, action: Callable[[], object]) -> float:
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        action()
        times.append(time.perf_counter() - started)
    return min(times)


def installed_mb(distribution: str) -> float:
    files = importlib.metadata.distribution(distribution).files or []
    return sum(f.locate().stat().st_size for f in files if f.locate().is_file()) / 1e6


def ensure_extra(argv: list[str]) -> None:
    """Re-run in a venv that has the `[embeddings]` extra when this interpreter lacks it."""
    if extra_installed():
        return
    python = BENCH_VENV / "bin" / "python"
    if not python.exists():
        print(f"installing the [embeddings] extra in {BENCH_VENV} ...", file=sys.stderr)
        venv.create(BENCH_VENV, system_site_packages=True, with_pip=True)
    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text())
    requirements = pyproject["project"]["optional-dependencies"]["embeddings"]
    subprocess.run([python, "-m", "pip", "install", "-q", *requirements], check=True)
    os.execv(python, [str(python), __file__, *argv])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="skip all 5000 AG News items")
    args = parser.parse_args()
    ensure_extra(sys.argv[1:])

    started = time.perf_counter()
    load_embedder.cache_clear()
    embedder = load_embedder()
    load_seconds = time.perf_counter() - started
    assert embedder is not None

    ag, bbc = ag_news(), bbc_news()
    full_sets = [sample(ag, AG_SAMPLE, SEED), *([] if args.quick else [ag]), bbc]
    spaces: list[tuple[str, Embed | None]] = [("TF-IDF/LSA", None), ("embeddings", embedder)]

    load = os.getloadavg()[0]
    print(
        f"Command: `python bench/bench_embeddings.py{' --quick' if args.quick else ''}` "
        f"({date.today()}, {os.cpu_count()} cores, load {load:.1f})\n"
    )
    version = importlib.metadata.version(MODEL_PACKAGE)
    print(f"model: {MODEL_PACKAGE} {version}, {embedder.dimensions} dimensions\n")

    print("| set | space | k | left over | ARI | NMI | clustering time |")
    print("|---|---|---|---|---|---|---|")
    for data in full_sets:
        name = data.name if "seed" in data.name else f"{data.name} (all {len(data.articles)})"
        for space, embed in spaces:
            s = score(data, embed)
            print(
                f"| {name} | {space} | {s.sections} | {s.leftovers} | {s.ari:.3f} | "
                f"{s.nmi:.3f} | {s.seconds:.1f} s |",
                flush=True,
            )

    print(
        f"\nDigest-sized inputs: mean ARI (min–max) over {SMALL_SEEDS} samples of "
        f"{SMALL_SAMPLE}, seeds 0–{SMALL_SEEDS - 1}\n"
    )
    print("| set | space | mean k | mean ARI (min–max) | mean NMI |")
    print("|---|---|---|---|---|")
    for data in (ag, bbc):
        samples = [sample(data, SMALL_SAMPLE, seed) for seed in range(SMALL_SEEDS)]
        for space, embed in spaces:
            scores = [score(s, embed) for s in samples]
            aris = [s.ari for s in scores]
            print(
                f"| {data.name} | {space} | {statistics.mean(s.sections for s in scores):.1f} | "
                f"{statistics.mean(aris):.3f} ({min(aris):.3f}–{max(aris):.3f}) | "
                f"{statistics.mean(s.nmi for s in scores):.3f} |",
                flush=True,
            )

    print("\n| speed (best of 3) | embeddings | TF-IDF fit on the same texts (reference) |")
    print("|---|---|---|")
    for data in (ag, bbc):
        texts = [embedding_text(a) for a in data.articles]
        embed_s = best_of(3, lambda texts=texts: embedder(texts))
        tfidf_s = best_of(3, lambda texts=texts: TfidfVectorizer().fit_transform(texts))
        chars = statistics.mean(map(len, texts))
        print(
            f"| {data.name}: {len(texts)} texts, mean {chars:.0f} chars | "
            f"{len(texts) / embed_s:.0f} texts/s ({embed_s / len(texts) * 1e6:.0f} ms per 1000) | "
            f"{len(texts) / tfidf_s:.0f} texts/s (embeddings take {embed_s / tfidf_s:.1f}x) |"
        )

    extra = ["wordllama", "tokenizers", "safetensors", "huggingface-hub", "hf-xet"]
    sizes = {name: installed_mb(name) for name in extra if _has(name)}
    spec = importlib.util.find_spec(MODEL_PACKAGE)
    assert spec is not None and spec.submodule_search_locations
    model_mb = (Path(spec.submodule_search_locations[0]) / WEIGHTS_FILE).stat().st_size / 1e6
    print(
        f"\nmodel load: {load_seconds:.2f} s; weights file {model_mb:.1f} MB; installed: "
        + ", ".join(f"{name} {mb:.1f} MB" for name, mb in sizes.items())
        + f" (total {sum(sizes.values()):.0f} MB)"
    )


def _has(distribution: str) -> bool:
    try:
        importlib.metadata.distribution(distribution)
    except importlib.metadata.PackageNotFoundError:
        return False
    return True


if __name__ == "__main__":
    main()
