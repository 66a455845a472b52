"""Learned boilerplate on real feeds: what recurs, what is dropped, what it costs.

Every file of ../shared/corpus/feeds_realworld is parsed and treated as one source's batch:
its items' recurring paragraphs are learned and stripped, exactly as `digest extract` does for
a feed. Prints a markdown table and the paragraphs dropped most often, to read by eye.

    python bench/bench_boilerplate.py [--show 15]
"""

from __future__ import annotations

import argparse
import time
from collections import Counter
from pathlib import Path

from digest.errors import SourceError
from digest.ingest.boilerplate import recurring_paragraphs, strip_boilerplate
from digest.ingest.feeds import parse_feed
from digest.models import Article

CORPUS = Path(__file__).resolve().parents[1] / ".." / "shared" / "corpus" / "feeds_realworld"


def feeds() -> list[tuple[str, list[Article]]]:
    found = []
    for path in sorted(p for p in CORPUS.rglob("*") if p.is_file()):
        if path.suffix in (".md", ".json") and path.name in ("README.md", "manifest.json"):
            continue
        try:
            _info, items = parse_feed(path.read_bytes(), url=path.as_uri(), source=path.name)
        except SourceError:
            continue
        if items:
            found.append((str(path.relative_to(CORPUS)), items))
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--show", type=int, default=15, help="dropped paragraphs to list")
    show = parser.parse_args().show
    if not CORPUS.is_dir():
        raise SystemExit(f"the corpus is not at {CORPUS}")
    batches = feeds()
    articles = sum(len(items) for _name, items in batches)
    words_before = words_after = changed = 0
    touched_feeds = 0
    dropped: Counter[str] = Counter()
    started = time.perf_counter()
    results = []
    for name, items in batches:
        recurring = recurring_paragraphs(items)
        stripped = [strip_boilerplate(item, recurring) for item in items]
        results.append((name, items, stripped))
    elapsed = time.perf_counter() - started
    for _name, items, stripped in results:
        feed_changed = False
        for before, after in zip(items, stripped, strict=True):
            words_before += len(before.text.split())
            words_after += len(after.text.split())
            if after is not before:
                changed += 1
                feed_changed = True
                kept = set(after.text.split("\n\n"))
                dropped.update(
                    " ".join(p.split())[:90] for p in before.text.split("\n\n") if p not in kept
                )
        touched_feeds += feed_changed
    print("| measure | result |\n|---|---|")
    print(f"| feeds parsed (one source each) | {len(batches)} |")
    print(f"| items | {articles} |")
    print(f"| feeds with learned boilerplate | {touched_feeds} |")
    print(f"| items stripped | {changed} ({changed / articles:.1%}) |")
    print(
        f"| words removed | {words_before - words_after} of {words_before} "
        f"({(words_before - words_after) / words_before:.1%}) |"
    )
    print(
        f"| learn + strip, all items | {elapsed * 1000:.0f} ms "
        f"({elapsed / articles * 1e6:.0f} µs per item) |"
    )
    print("\nMost often dropped paragraphs (first 90 characters; count of items):\n")
    for paragraph, count in dropped.most_common(show):
        print(f"- {count} × {paragraph}")


if __name__ == "__main__":
    main()
