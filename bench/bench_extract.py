"""Extraction quality and speed: `python bench/bench_extract.py [--pages N] [--corpus DIR]`.

Measures, in one run, our `extract_page` against plain `trafilatura.extract` (its defaults)
on the same pages, both given the raw bytes:
- body F1 on extraction_scrapinghub with that benchmark's own metric (upstream evaluate.py:
  `\\w+` tokens, 4-gram shingle multisets, TP/FP/FN normalised per page, precision and recall
  averaged over pages, F1 from the two means), with a 95% bootstrap interval and the paired
  difference against trafilatura;
- on extraction_trafilatura_eval: the share of must-keep snippets kept and of must-drop
  snippets kept (leakage), by substring as trafilatura's own evaluation tests them, after
  collapsing whitespace on both sides;
- pages per second in one process (scrapinghub + trafilatura_eval after a few warm-up pages,
  calls interleaved so a noisy machine slows both alike);
- metadata on extraction_readability_testpages: title and byline agreement with Readability's
  expected metadata, against trafilatura's own metadata.
A page we refuse (ExtractError) counts as empty text.
"""

from __future__ import annotations

import argparse
import gzip
import json
import random
import re
import statistics
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import trafilatura

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from digest.errors import ExtractError  # noqa: E402
from digest.ingest.extract import extract_page  # noqa: E402

DEFAULT_CORPUS = REPO / ".." / "shared" / "corpus"
BOOTSTRAP_ROUNDS = 1000
WARM_UP_PAGES = 5
_TOKEN = re.compile(r"\w+")

Extractor = Callable[[bytes, str], str]
PageShares = tuple[float, float, float]  # one page's TP, FP, FN shares


def ours(html: bytes, url: str) -> str:
    try:
        return extract_page(html, url=url, source="bench").text
    except ExtractError:
        return ""


def plain_trafilatura(html: bytes, url: str) -> str:
    return trafilatura.extract(html, url=url) or ""


EXTRACTORS: dict[str, Extractor] = {
    "digest extract_page": ours,
    "trafilatura.extract (defaults)": plain_trafilatura,
}


# --- the scrapinghub metric ---------------------------------------------------------------------


def _shingles(text: str, n: int = 4) -> Counter[tuple[str, ...]]:
    tokens = _TOKEN.findall(text)
    return Counter(tuple(tokens[i : i + n]) for i in range(max(1, len(tokens) - n + 1)) if tokens)


def shingle_match(true: str, pred: str) -> PageShares:
    """TP, FP, FN over 4-gram shingles, normalised so that every page weighs the same."""
    gold, guess = _shingles(true), _shingles(pred)
    tp = sum((gold & guess).values())
    fp = sum((guess - gold).values())
    fn = sum((gold - guess).values())
    total = tp + fp + fn
    return (tp / total, fp / total, fn / total) if total else (0.0, 0.0, 0.0)


def _precision(tp: float, fp: float, fn: float) -> float:
    if fp == fn == 0:
        return 1.0
    return 0.0 if tp == fp == 0 else tp / (tp + fp)


def _recall(tp: float, fp: float, fn: float) -> float:
    if fp == fn == 0:
        return 1.0
    return 0.0 if tp == fn == 0 else tp / (tp + fn)


def prf(rows: list[PageShares]) -> tuple[float, float, float]:
    """Precision and recall averaged over pages, F1 from the two averages (as upstream)."""
    precision = statistics.mean(_precision(*r) for r in rows if r[0] + r[1] > 0)
    recall = statistics.mean(_recall(*r) for r in rows if r[0] + r[2] > 0)
    return precision, recall, 2 * precision * recall / (precision + recall)


def bootstrap_f1(rows: list[PageShares], other: list[PageShares]) -> tuple[float, float]:
    """95% half-widths of F1 and of F1 minus the other extractor's F1 on the same resample."""
    rng = random.Random(20261125)
    scores, differences = [], []
    for _ in range(BOOTSTRAP_ROUNDS):
        picks = [rng.randrange(len(rows)) for _ in rows]
        f1 = prf([rows[i] for i in picks])[2]
        scores.append(f1)
        differences.append(f1 - prf([other[i] for i in picks])[2])
    return 1.96 * statistics.stdev(scores), 1.96 * statistics.stdev(differences)


# --- corpora ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Page:
    key: str
    url: str
    html: bytes


def scrapinghub(corpus: Path, limit: int | None) -> Iterator[tuple[Page, str]]:
    folder = corpus / "extraction_scrapinghub"
    truth = json.loads((folder / "ground-truth.json").read_text(encoding="utf-8"))
    for key in sorted(truth)[:limit]:
        html = gzip.decompress((folder / "html" / f"{key}.html.gz").read_bytes())
        yield Page(key, truth[key]["url"], html), truth[key]["articleBody"]


def trafilatura_eval(corpus: Path, limit: int | None) -> Iterator[tuple[Page, dict[str, list]]]:
    folder = corpus / "extraction_trafilatura_eval"
    annotations = json.loads((folder / "annotations.json").read_text(encoding="utf-8"))
    for item in annotations[:limit]:
        html = gzip.decompress((folder / "html" / f"{item['id']}.html.gz").read_bytes())
        yield Page(item["id"], item["url"], html), item


def readability_pages(corpus: Path) -> Iterator[tuple[Page, dict[str, str | None], str]]:
    folder = corpus / "extraction_readability_testpages"
    manifest = json.loads((folder / "manifest.json").read_text(encoding="utf-8"))
    for entry in manifest["pages"]:
        page_folder = folder / "pages" / entry["name"]
        html = gzip.decompress((page_folder / "source.html.gz").read_bytes())
        expected = json.loads((page_folder / "expected-metadata.json").read_text("utf-8"))
        url = f"http://fakehost/test/{entry['name']}/"  # what Readability's tests pass
        yield Page(entry["name"], url, html), expected, entry["kind"]


# --- measuring ----------------------------------------------------------------------------------


class Timer:
    """Seconds spent in each extractor, summed over every call."""

    def __init__(self) -> None:
        self.seconds: Counter[str] = Counter()
        self.pages: Counter[str] = Counter()

    def run(self, name: str, page: Page) -> str:
        started = time.perf_counter()
        text = EXTRACTORS[name](page.html, page.url)
        self.seconds[name] += time.perf_counter() - started
        self.pages[name] += 1
        return text


def _flat(text: str) -> str:
    return " ".join(text.split())


def _snippet_counts(text: str, item: dict[str, list]) -> Counter[str]:
    flat = _flat(text)
    return Counter(
        {
            "with": len(item["with"]),
            "with_kept": sum(_flat(s) in flat for s in item["with"]),
            "without": len(item["without"]),
            "without_kept": sum(_flat(s) in flat for s in item["without"]),
        }
    )


_BYLINE_LEAD = ("written by ", "by ", "par ", "von ")


def _words(value: str | None) -> str:
    """Lower-case words only: punctuation, spacing and case are not disagreements."""
    return " ".join(_TOKEN.findall((value or "").casefold()))


def _byline(value: str | None) -> str:
    words = _words(value)
    for lead in _BYLINE_LEAD:
        words = words.removeprefix(lead)
    return words


def _agreement(found: str, expected: str) -> tuple[bool, bool]:
    """(the same words, or one is the other plus more: a site name, a date)."""
    return found == expected, bool(found) and (found in expected or expected in found)


def _metadata(page: Page) -> dict[str, tuple[str, str]]:
    """(title, author) per extractor; our refusal leaves both empty."""
    try:
        article = extract_page(page.html, url=page.url, source="bench")
        found = (article.title, article.author)
    except ExtractError:
        found = ("", "")
    meta = trafilatura.extract_metadata(page.html, default_url=page.url)
    reference = (meta.title or "", meta.author or "") if meta else ("", "")
    return dict(zip(EXTRACTORS, [found, reference], strict=True))


def measure_bodies(corpus: Path, limit: int | None, timer: Timer) -> dict[str, list[PageShares]]:
    """Shingle scores per scrapinghub page, for each extractor."""
    pages = list(scrapinghub(corpus, limit))
    for page, _ in pages[:WARM_UP_PAGES]:  # lazy imports and first-use regex compilation
        for extractor in EXTRACTORS.values():
            extractor(page.html, page.url)
    rows: dict[str, list[PageShares]] = {name: [] for name in EXTRACTORS}
    for page, truth in pages:
        for name in EXTRACTORS:
            rows[name].append(shingle_match(truth, timer.run(name, page)))
    return rows


def measure_snippets(corpus: Path, limit: int | None, timer: Timer) -> dict[str, Counter[str]]:
    """Must-keep and must-drop snippets found, summed over trafilatura_eval, per extractor."""
    counts: dict[str, Counter[str]] = {name: Counter(pages=0) for name in EXTRACTORS}
    for page, item in trafilatura_eval(corpus, limit):
        for name in EXTRACTORS:
            counts[name] += _snippet_counts(timer.run(name, page), item) + Counter(pages=1)
    return counts


def measure_metadata(corpus: Path) -> dict[str, Counter[str]]:
    """Title and byline agreement with Readability's expectations on the real-site pages."""
    agree: dict[str, Counter[str]] = {name: Counter() for name in EXTRACTORS}
    for page, expected, kind in readability_pages(corpus):
        if kind != "real-site-page":
            continue
        for name, (title, author) in _metadata(page).items():
            same, close = _agreement(_words(title), _words(expected.get("title")))
            agree[name] += Counter(pages=1, title=same, title_close=close)
            if expected.get("byline"):
                same, close = _agreement(_byline(author), _byline(expected["byline"]))
                agree[name] += Counter(bylines=1, byline=same, byline_close=close)
    return agree


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--pages", type=int, default=None, help="first N pages of each set")
    parser.add_argument("--corpus", type=Path, default=DEFAULT_CORPUS)
    args = parser.parse_args()
    timer = Timer()
    rows = measure_bodies(args.corpus, args.pages, timer)
    snippets = measure_snippets(args.corpus, args.pages, timer)
    agree = measure_metadata(args.corpus)

    names = list(EXTRACTORS)
    reference = names[1]
    scores = {name: prf(rows[name]) for name in names}
    intervals = {name: bootstrap_f1(rows[name], rows[reference]) for name in names}
    print(f"pages: scrapinghub {len(rows[reference])}, trafilatura_eval "
          f"{snippets[reference]['pages']}, readability real-site {agree[reference]['pages']} "
          f"({agree[reference]['bylines']} with a byline)\n")  # fmt: skip
    print("| measure | " + " | ".join(names) + " |")
    print("|---|" + "---|" * len(names))
    _row("scrapinghub F1 (± 95%)", [f"{scores[n][2]:.4f} ± {intervals[n][0]:.4f}" for n in names])
    _row("scrapinghub precision", [f"{scores[n][0]:.4f}" for n in names])
    _row("scrapinghub recall", [f"{scores[n][1]:.4f}" for n in names])
    _row(
        "F1 minus trafilatura (± 95%, paired)",
        [f"{scores[n][2] - scores[reference][2]:+.4f} ± {intervals[n][1]:.4f}" for n in names[:1]]
        + ["(reference)"],
    )
    _row("trafilatura_eval must-keep kept", [_share(snippets[n], "with") for n in names])
    _row("trafilatura_eval must-drop kept (leak)", [_share(snippets[n], "without") for n in names])
    _row("pages/s, one process", [f"{timer.pages[n] / timer.seconds[n]:.1f}" for n in names])
    for field, whole, label in (
        ("title", "pages", "readability title: same words"),
        ("title_close", "pages", "title: one contains the other"),
        ("byline", "bylines", "readability byline: same words"),
        ("byline_close", "bylines", "byline: one contains the other"),
    ):
        _row(label, [_rate(agree[n][field], agree[n][whole]) for n in names])


def _row(label: str, cells: list[str]) -> None:
    print(f"| {label} | " + " | ".join(cells) + " |")


def _share(counts: Counter[str], kind: str) -> str:
    return _rate(counts[f"{kind}_kept"], counts[kind])


def _rate(part: int, whole: int) -> str:
    return f"{part / whole:.1%} ({part}/{whole})" if whole else "n/a"


if __name__ == "__main__":
    main()
