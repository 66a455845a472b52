"""Dedupe quality and speed: `python bench/bench_dedupe.py [--runs N] [--datasketch]`.

Measures, in one run on this machine:
- precision, recall and F1 of `dedupe` on every set in ../shared/corpus/dedup_pairs, scored on
  pairs of articles: two articles are predicted duplicates when one ends up in the other's
  `also_in` (or both in the same kept article's). Positives are the silver `exact_duplicate`
  and `near_duplicate` pairs; `partial_overlap` pairs (the same story rewritten, or unrelated
  snippets sharing a feed preamble) count neither way and are reported apart; `related` pairs
  and every pair not listed are negatives. The feed set's positives are its cross-format item
  clusters, among the items of the listed files present in ../shared/corpus/feeds_realworld;
- the time `dedupe` takes on 10,000 articles (BBC + AG News + WikiRef220 + lightly rewritten
  copies of some of them), against tokenising the same texts as the in-run reference, and the
  share of those copies found;
- with --datasketch: dedupe.py's MinHash + LSH candidate search against the same search done
  with the `datasketch` library (installed in a venv under /tmp: bench-only, not a dependency).
"""

from __future__ import annotations

import argparse
import gzip
import itertools
import json
import random
import re
import statistics
import subprocess
import sys
import time
import venv
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from digest.ingest.dedupe import dedupe  # noqa: E402
from digest.ingest.feeds import parse_feed  # noqa: E402
from digest.models import Article, article_id  # noqa: E402

POSITIVE = {"exact_duplicate", "near_duplicate"}
NEITHER = {"partial_overlap"}
TIMING_SIZE = 10_000
DATASKETCH_VENV = Path("/tmp/digest-bench/datasketch-venv")

Pair = frozenset[str]
Dedupe = Callable[[Sequence[Article]], list[Article]]


@dataclass(frozen=True)
class LabelledSet:
    name: str
    articles: list[Article]  # each article's `source` is its id in the set
    positives: set[Pair]
    neither: set[Pair]


@dataclass(frozen=True)
class Score:
    pairs: int
    true_positives: int
    false_positives: int
    false_negatives: int
    neither_merged: int = 0
    seconds: float = 0.0

    @property
    def precision(self) -> float:
        found = self.true_positives + self.false_positives
        return self.true_positives / found if found else 1.0

    @property
    def recall(self) -> float:
        wanted = self.true_positives + self.false_negatives
        return self.true_positives / wanted if wanted else 1.0

    @property
    def f1(self) -> float:
        p, r = self.precision, self.recall
        return 2 * p * r / (p + r) if p + r else 0.0


def _article(source: str, title: str, text: str) -> Article:
    url = f"https://{source.replace('/', '-')}.example/"
    return Article(id=article_id(url), url=url, title=title, text=text, source=source)


def _jsonl(path: Path) -> list[dict]:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8") as lines:
        return [json.loads(line) for line in lines]


def _pair_set(name: str, rows: list[dict], pairs_file: Path, text_field: str) -> LabelledSet:
    articles = [_article(row["id"], row["title"], row[text_field]) for row in rows]
    ids = {row["id"] for row in rows}
    # Some pairs name ids missing from the set: they were mined from a larger copy of it.
    labelled = [p for p in _jsonl(pairs_file) if {p["a"], p["b"]} <= ids]
    return LabelledSet(
        name=name,
        articles=articles,
        positives={frozenset((p["a"], p["b"])) for p in labelled if p["silver_label"] in POSITIVE},
        neither={frozenset((p["a"], p["b"])) for p in labelled if p["silver_label"] in NEITHER},
    )


def _feed_set(corpus: Path) -> LabelledSet:
    """Items of the cross-format feed files that are present; positives from the gold clusters."""
    groups = json.loads((corpus / "dedup_pairs/feed_items_cross_format.json").read_text())
    feeds = corpus / "feeds_realworld"
    articles: list[Article] = []
    positives: set[Pair] = set()
    for group in groups.values():
        present = [name for name in group["files"] if (feeds / name).is_file()]
        for name in present:
            _, items = parse_feed((feeds / name).read_bytes(), url="", source=name)
            # The source names the item, so that `also_in` says which items were merged.
            articles += [replace(item, source=f"{name}#{n}") for n, item in enumerate(items)]
        for cluster in group["cross_file_duplicate_clusters"]:
            members = [f"{m['file']}#{m['index']}" for m in cluster["members"]]
            members = [m for m in members if m.split("#")[0] in present]
            positives |= {frozenset(ab) for ab in itertools.combinations(members, 2)}
    return LabelledSet("feed_items_cross_format", articles, positives, set())


def labelled_sets(corpus: Path) -> list[LabelledSet]:
    pairs = corpus / "dedup_pairs"
    return [
        _pair_set(
            "ag_news_test_pairs",
            _jsonl(corpus / "topics_ag_news_test/ag_news_test.jsonl.gz"),
            pairs / "ag_news_test_pairs.jsonl",
            "description",
        ),
        _pair_set(
            "bbc_news_pairs",
            _jsonl(corpus / "topics_bbc_news/bbc_news.jsonl.gz"),
            pairs / "bbc_news_pairs.jsonl",
            "text",
        ),
        _pair_set(
            "wikiref220_pairs",
            _jsonl(corpus / "stories_wikiref220/wikiref220.jsonl"),
            pairs / "wikiref220_pairs.jsonl",
            "text",
        ),
        _feed_set(corpus),
    ]


def predicted_pairs(kept: Iterable[Article]) -> set[Pair]:
    groups = [(a.source, *a.also_in) for a in kept if a.also_in]
    return {frozenset(ab) for group in groups for ab in itertools.combinations(group, 2)}


def score(labelled: LabelledSet, run: Dedupe = dedupe) -> tuple[Score, set[Pair], set[Pair]]:
    """The score, the false positives and the false negatives."""
    started = time.perf_counter()
    kept = run(labelled.articles)
    seconds = time.perf_counter() - started
    merged = predicted_pairs(kept)
    found = merged - labelled.neither
    false_positives = found - labelled.positives
    false_negatives = labelled.positives - found
    result = Score(
        pairs=len(labelled.positives),
        true_positives=len(found & labelled.positives),
        false_positives=len(false_positives),
        false_negatives=len(false_negatives),
        neither_merged=len(merged & labelled.neither),
        seconds=seconds,
    )
    return result, false_positives, false_negatives


def _rewritten(article: Article, rng: random.Random, n: int) -> Article:
    """A syndicated copy: a dateline, some sentences dropped, often a new headline."""
    sentences = re.split(r"(?<=[.!?])\s+", article.text.strip())
    kept = [s for s in sentences if rng.random() > 0.1] or sentences[:1]
    text = "LONDON (Wire) - " + " ".join(kept)
    words = article.text.split()
    title = rng.choice([f"{article.title} (Wire)", " ".join(words[1:9]).rstrip(".,")])
    return _article(f"copy{n}:{article.source}", title, text)


def timing_articles(sets: list[LabelledSet], seed: int = 7) -> tuple[list[Article], set[Pair]]:
    """10,000 articles: every labelled one, then rewritten copies of some; and the copy pairs."""
    originals = [a for s in sets for a in s.articles if s.name != "feed_items_cross_format"]
    rng = random.Random(seed)
    sources = rng.sample(originals, TIMING_SIZE - len(originals))
    copies = [_rewritten(a, rng, n) for n, a in enumerate(sources)]
    pairs = {frozenset((a.source, c.source)) for a, c in zip(sources, copies, strict=True)}
    return originals + copies, pairs


def _tokenise(articles: Sequence[Article]) -> int:
    word = re.compile(r"\w+")
    return sum(len(word.findall(f"{a.title}\n{a.text}".lower())) for a in articles)


def _median_seconds(work: Callable[[], object], runs: int) -> float:
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        work()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


# Run in the datasketch venv (which sees this interpreter's packages, digest included): the
# candidate search of dedupe.py, then the same with datasketch's MinHash and MinHashLSH, on the
# same shingles, banding and number of permutations. Prints JSON.
_DATASKETCH_SCRIPT = """
import json, statistics, sys, time
from datasketch import MinHash, MinHashLSH
from digest.ingest import dedupe as d

texts, runs = json.load(sys.stdin)
shingles = [s for s in map(d._shingles, texts) if len(s) >= d.MIN_SHINGLES]

def ours():
    prints = [d._Fingerprint((), "", frozenset(), frozenset(), frozenset(), d._minhash(s))
              for s in shingles]
    return sum(map(len, d._similar_texts(prints)))

def theirs():
    empty = MinHash(num_perm=d.PERMUTATIONS, seed=d.SEED, hashfunc=int)
    lsh = MinHashLSH(num_perm=d.PERMUTATIONS, params=(d.BANDS, 2))
    found = 0
    for n, values in enumerate(shingles):
        minhash = empty.copy()
        minhash.update_batch(values.tolist())
        found += len(lsh.query(minhash))
        lsh.insert(n, minhash, check_duplication=False)
    return found

result = {"texts": len(shingles)}
for name, work in (("ours", ours), ("datasketch", theirs)):
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        result[name + "_candidates"] = work()
        times.append(time.perf_counter() - started)
    result[name] = statistics.median(times)
print(json.dumps(result))
"""


def _datasketch_comparison(articles: Sequence[Article], runs: int) -> dict:
    python = DATASKETCH_VENV / "bin" / "python"
    if not python.exists():
        venv.create(DATASKETCH_VENV, system_site_packages=True, with_pip=True)
        subprocess.run([python, "-m", "pip", "install", "-q", "datasketch>=2.0"], check=True)
    version = subprocess.run(
        [python, "-c", "import datasketch; print(datasketch.__version__)"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    imports = []
    for module in ("numpy", "datasketch"):
        started = time.perf_counter()
        subprocess.run([python, "-c", f"import {module}"], check=True)
        imports.append(time.perf_counter() - started)
    done = subprocess.run(
        [python, "-c", _DATASKETCH_SCRIPT],
        input=json.dumps([[a.text for a in articles], runs]),
        check=True,
        capture_output=True,
        text=True,
    )
    return {
        **json.loads(done.stdout),
        "version": version,
        "import_numpy": imports[0],
        "import_datasketch": imports[1],
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--corpus", type=Path, default=REPO / ".." / "shared" / "corpus")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--show-errors", action="store_true", help="list wrong pairs on stderr")
    parser.add_argument("--datasketch", action="store_true", help="compare with datasketch")
    options = parser.parse_args()

    sets = labelled_sets(options.corpus)
    print("| set | articles | positive pairs | precision | recall | F1 | time |")
    print("|---|---|---|---|---|---|---|")
    scores = []
    for labelled in sets:
        result, false_positives, false_negatives = score(labelled)
        scores.append(result)
        print(
            f"| {labelled.name} | {len(labelled.articles)} | {result.pairs} "
            f"| {result.precision:.3f} | {result.recall:.3f} | {result.f1:.3f} "
            f"| {result.seconds * 1000:.0f} ms |"
        )
        if options.show_errors:
            for kind, wrong in (("FP", false_positives), ("FN", false_negatives)):
                for pair in sorted(sorted(p) for p in wrong):
                    print(f"  {kind} {labelled.name}: {' / '.join(pair)}", file=sys.stderr)
    overall = Score(
        pairs=sum(s.pairs for s in scores),
        true_positives=sum(s.true_positives for s in scores),
        false_positives=sum(s.false_positives for s in scores),
        false_negatives=sum(s.false_negatives for s in scores),
    )
    print(
        f"| all sets | | {overall.pairs} | {overall.precision:.3f} "
        f"| {overall.recall:.3f} | {overall.f1:.3f} | |"
    )
    print()
    for labelled, result in zip(sets, scores, strict=True):
        if labelled.neither:
            print(
                f"- {labelled.name}: {result.neither_merged} of {len(labelled.neither)} "
                "partial_overlap pairs merged (not scored)"
            )

    articles, copy_pairs = timing_articles(sets)
    dedupe_seconds = _median_seconds(lambda: dedupe(articles), options.runs)
    tokenise_seconds = _median_seconds(lambda: _tokenise(articles), options.runs)
    found = predicted_pairs(dedupe(articles))
    print()
    print("| measure | result |")
    print("|---|---|")
    print(
        f"| dedupe, {len(articles)} articles (median of {options.runs}) | {dedupe_seconds:.2f} s |"
    )
    print(f"| tokenising the same texts (reference) | {tokenise_seconds:.2f} s |")
    print(f"| dedupe / tokenise ratio | {dedupe_seconds / tokenise_seconds:.1f}x |")
    print(
        f"| rewritten copies found (synthetic) | {len(found & copy_pairs)}/{len(copy_pairs)} "
        f"({len(found & copy_pairs) / len(copy_pairs):.1%}) |"
    )
    if options.datasketch:
        compared = _datasketch_comparison(articles, options.runs)
        print(
            f"| MinHash + LSH candidates, {compared['texts']} texts: dedupe.py "
            f"| {compared['ours']:.2f} s ({compared['ours_candidates']} candidates) |"
        )
        print(
            f"| same with datasketch {compared['version']} "
            f"| {compared['datasketch']:.2f} s ({compared['datasketch_candidates']} candidates) |"
        )
        print(
            f"| python -c 'import numpy' / 'import datasketch' "
            f"| {compared['import_numpy']:.2f} s / {compared['import_datasketch']:.2f} s |"
        )


if __name__ == "__main__":
    main()
