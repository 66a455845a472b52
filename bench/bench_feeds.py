"""Feed ingestion robustness and speed: `python bench/bench_feeds.py [--runs N] [--feeds N]`.

Prints markdown tables, measured in one run on this machine:
a. every file of ../shared/corpus/feeds_realworld through `parse_feed` (nothing may raise but
   SourceError), items recovered against feedparser alone (`feedparser.parse` on the bytes),
   per format; each file where we recover fewer items, with the reason;
b. every file of feeds_malformed: a result or a one-line error, items against feedparser alone;
c. N feeds (default 200) served by a threaded http.server on 127.0.0.1 (the XML feeds of
   feeds_realworld, cycled under N distinct paths), ingested end to end by `digest fetch`
   (a subprocess with its own digest.toml and SQLite file, as a user runs it), against the
   same feeds through rss2email, the reference. rss2email is installed from PyPI into a
   throwaway venv under /tmp/digest-bench-cache (never a project dependency) and runs
   `r2e run --no-send`: it fetches, parses and builds every message, and mails nothing.
   Peak RSS is each child's own (os.wait4's rusage: getrusage(RUSAGE_CHILDREN) for that child).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter, defaultdict
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import feedparser

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from digest.errors import SourceError  # noqa: E402
from digest.ingest.feeds import parse_feed  # noqa: E402
from digest.ingest.normalize import html_to_text  # noqa: E402

CORPUS = REPO.parent / "shared" / "corpus"
CACHE = Path(tempfile.gettempdir()) / "digest-bench-cache"
RSS2EMAIL = "rss2email==3.14"
XML_FEED_FORMATS = ("rss", "atom")  # what feedparser, and so rss2email, reads
BASE_URL = "https://bench.example/feed"


# --- a and b: the corpus through parse_feed and through feedparser alone ----------------------


@dataclass(frozen=True)
class FileResult:
    file: str
    format: str
    ours: int
    feedparser: int
    error: str  # our one-line SourceError, if any
    crash: str  # any other exception: a bug
    seconds: float
    feedparser_seconds: float
    shown_by_feedparser: int  # feedparser entries with a title, a web link or some text


def _entry_has_content(entry: Any) -> bool:
    link = str(entry.get("link") or "")
    bodies = [c.get("value", "") for c in entry.get("content") or []] + [entry.get("summary", "")]
    return bool(
        str(entry.get("title") or "").strip()
        or link.startswith(("http://", "https://"))
        or any(html_to_text(str(body)) for body in bodies)
    )


def run_file(path: Path, relative: str, fmt: str) -> FileResult:
    data = path.read_bytes()
    started = time.perf_counter()
    ours, error, crash = 0, "", ""
    try:
        _info, articles = parse_feed(data, url=BASE_URL, source=relative)
        ours = len(articles)
    except SourceError as raised:
        error = str(raised)
    except Exception as raised:  # noqa: BLE001 (the bench reports it as a crash)
        crash = f"{type(raised).__name__}: {raised}"
    seconds = time.perf_counter() - started
    started = time.perf_counter()
    parsed = feedparser.parse(data)
    feedparser_seconds = time.perf_counter() - started
    entries = parsed.get("entries", [])
    return FileResult(
        file=relative,
        format=fmt,
        ours=ours,
        feedparser=len(entries),
        error=error,
        crash=crash,
        seconds=seconds,
        feedparser_seconds=feedparser_seconds,
        shown_by_feedparser=sum(_entry_has_content(entry) for entry in entries),
    )


def run_folder(folder: str) -> list[FileResult]:
    manifest = json.loads((CORPUS / folder / "manifest.json").read_text(encoding="utf-8"))
    return [
        run_file(CORPUS / folder / record["file"], f"{folder}/{record['file']}", record["format"])
        for record in manifest
    ]


def print_realworld(results: list[FileResult]) -> None:
    print(f"### a. feeds_realworld: {len(results)} files through parse_feed\n")
    print("| format | files | items (ours) | items (feedparser alone) | SourceError | other |")
    print("|---|---:|---:|---:|---:|---:|")
    by_format: dict[str, list[FileResult]] = defaultdict(list)
    for result in results:
        by_format[result.format].append(result)
    for fmt, group in sorted(by_format.items(), key=lambda item: -len(item[1])):
        print(_row(fmt, group))
    print(_row("**total**", results))
    ours_s = sum(r.seconds for r in results)
    theirs_s = sum(r.feedparser_seconds for r in results)
    print(
        f"\nParse time, all files: ours {ours_s:.2f} s, feedparser alone {theirs_s:.2f} s "
        f"({ours_s / theirs_s:.2f}x; ours runs feedparser inside, without its sanitiser and link "
        "resolver, then sanitises with nh3 and normalises)."
    )
    fewer = [r for r in results if r.ours < r.feedparser]
    print(f"\nFiles where we recover fewer items than feedparser: {len(fewer)}\n")
    if fewer:
        print("| file | ours | feedparser | why |")
        print("|---|---:|---:|---|")
        for result in fewer:
            print(f"| {result.file} | {result.ours} | {result.feedparser} | {_why(result)} |")


def _row(label: str, group: list[FileResult]) -> str:
    return (
        f"| {label} | {len(group)} | {sum(r.ours for r in group)} | "
        f"{sum(r.feedparser for r in group)} | {sum(bool(r.error) for r in group)} | "
        f"{sum(bool(r.crash) for r in group)} |"
    )


def _why(result: FileResult) -> str:
    empty = result.feedparser - result.shown_by_feedparser
    if result.crash:
        return f"crash: {result.crash}"
    if result.ours + empty == result.feedparser:
        why = f"{empty} item(s) with no title, no http(s) link and no text: nothing to show"
        return why + ("; so a SourceError" if result.error else "")
    if result.error:
        return f"SourceError: {result.error}"
    return "unexplained"


def print_malformed(results: list[FileResult]) -> None:
    print(f"\n### b. feeds_malformed: {len(results)} files through parse_feed\n")
    outcomes = Counter(_outcome(r) for r in results)
    print("| outcome | files |")
    print("|---|---:|")
    for outcome in ("items recovered", "a feed with no items", "one-line SourceError", "crash"):
        print(f"| {outcome} | {outcomes.get(outcome, 0)} |")
    ours, theirs = sum(r.ours for r in results), sum(r.feedparser for r in results)
    both = sum(r.ours > 0 and r.feedparser > 0 for r in results)
    print("\n| items recovered | ours | feedparser alone |\n|---|---:|---:|")
    print(f"| total | {ours} | {theirs} |")
    print(
        f"| files with any item | {sum(r.ours > 0 for r in results)} | "
        f"{sum(r.feedparser > 0 for r in results)} |"
    )
    print(f"\n({both} files give items to both.) Errors, one line each:\n")
    for result in results:
        if result.error or result.crash:
            print(f"- `{(result.error or result.crash)[:160]}`")
    fewer = [r for r in results if r.ours < r.feedparser]
    if fewer:
        print("\nFewer items than feedparser:\n")
        for result in fewer:
            print(f"- {result.file}: {result.ours} vs {result.feedparser}: {_why(result)}")


def _outcome(result: FileResult) -> str:
    if result.crash:
        return "crash"
    if result.error:
        return "one-line SourceError" if "\n" not in result.error else "crash"
    return "items recovered" if result.ours else "a feed with no items"


# --- c: N feeds over HTTP, end to end ----------------------------------------------------------


def xml_feed_files() -> list[Path]:
    manifest = json.loads(
        (CORPUS / "feeds_realworld" / "manifest.json").read_text(encoding="utf-8")
    )
    return sorted(
        CORPUS / "feeds_realworld" / record["file"]
        for record in manifest
        if record["format"].startswith(XML_FEED_FORMATS)
        and record["format"] not in ("atom-entry", "rss-in-json")
    )


def serve(files: list[Path], count: int) -> tuple[ThreadingHTTPServer, list[str]]:
    """A threaded server on 127.0.0.1 with `count` distinct paths cycling through `files`."""
    routes = {
        f"/f/{n:03d}/{files[n % len(files)].name}": files[n % len(files)] for n in range(count)
    }
    bodies = {path: file.read_bytes() for path, file in routes.items()}

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: object) -> None:
            pass

        def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
            body = bodies.get(self.path)
            if body is None:
                self.send_error(404)
                return
            self.send_response(200)
            self.send_header("Content-Type", "application/xml")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.daemon_threads = True
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{httpd.server_address[1]}"
    return httpd, [base + path for path in routes]


@dataclass(frozen=True)
class Measured:
    seconds: float
    peak_rss_mb: float
    stdout: str


def measure(command: list[str], cwd: Path, env: dict[str, str] | None = None) -> Measured:
    """Wall time and the child's own peak RSS (os.wait4 reports that child's rusage)."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        started = time.perf_counter()
        process = subprocess.Popen(command, cwd=cwd, stdout=out, stderr=err, env=env)
        _pid, status, usage = os.wait4(process.pid, 0)
        seconds = time.perf_counter() - started
        process.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        if process.returncode != 0:
            raise RuntimeError(f"{command[:3]} failed: {err.read().decode()[-2000:]}")
        return Measured(seconds, usage.ru_maxrss / 1024, out.read().decode())


def digest_command() -> list[str]:
    return [sys.executable, "-m", "digest"]


def run_digest(urls: list[str], folder: Path) -> tuple[Measured, dict[str, Any]]:
    """`digest fetch --json` on these URLs as feed sources, in a fresh folder and database."""
    folder.mkdir(parents=True)
    config = folder / "digest.toml"
    config.write_text(
        'version = 1\ndatabase_url = "sqlite:///digest.db"\n\n'
        + "".join(
            f'[[sources]]\nname = "feed-{n:03d}"\nurl = "{url}"\nkind = "feed"\n\n'
            for n, url in enumerate(urls)
        ),
        encoding="utf-8",
    )
    measured = measure([*digest_command(), "--config", str(config), "fetch", "--json"], folder)
    return measured, json.loads(measured.stdout)


def rss2email() -> Path:
    """The r2e script of a throwaway venv, installed from PyPI once per cache."""
    venv = CACHE / f"venv-{RSS2EMAIL.replace('==', '-')}"
    script = venv / "bin" / "r2e"
    if not script.exists():
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        subprocess.run(
            [str(venv / "bin" / "python"), "-m", "pip", "install", "-q", RSS2EMAIL],
            check=True,
            capture_output=True,
        )
    return script


def run_rss2email(script: Path, urls: list[str], folder: Path) -> tuple[Measured, int]:
    """`r2e run --no-send` on these URLs, with fresh state; (measures, entries seen)."""
    folder.mkdir(parents=True)
    config, data = folder / "rss2email.cfg", folder / "rss2email.json"
    config.write_text(
        "[DEFAULT]\nto = reader@bench.example\nfrom = bench@bench.example\n"
        # Never mails: --no-send below; a missing sendmail would fail loudly if it tried.
        f"sendmail = {folder / 'no-sendmail'}\n\n"
        + "".join(f"[feed.feed-{n:03d}]\nurl = {url}\n\n" for n, url in enumerate(urls)),
        encoding="utf-8",
    )
    env = {**os.environ, "HOME": str(folder)}
    command = [str(script), "-c", str(config), "-d", str(data), "run", "--no-send"]
    measured = measure(command, folder, env)
    feeds = json.loads(data.read_text(encoding="utf-8"))["feeds"]
    return measured, sum(len(feed.get("seen") or {}) for feed in feeds)


def print_http(runs: int, count: int) -> None:
    files = xml_feed_files()
    httpd, urls = serve(files, count)
    try:
        script = rss2email()
        ours: list[tuple[Measured, dict[str, Any]]] = []
        theirs: list[tuple[Measured, int]] = []
        with tempfile.TemporaryDirectory() as scratch:
            # The same commands with nothing to fetch: start-up time and the import floor.
            idle = run_digest([], Path(scratch) / "digest-idle")[0]
            idle_theirs = run_rss2email(script, [], Path(scratch) / "r2e-idle")[0]
            for run in range(runs):
                ours.append(run_digest(urls, Path(scratch) / f"digest-{run}"))
                theirs.append(run_rss2email(script, urls, Path(scratch) / f"r2e-{run}"))
    finally:
        httpd.shutdown()
        httpd.server_close()
    report = ours[-1][1]
    failed = [s for s in report["sources"] if s["error"]]
    ours_s = statistics.median(m.seconds for m, _ in ours)
    theirs_s = statistics.median(m.seconds for m, _ in theirs)
    print(
        f"\n### c. {count} feeds over HTTP on 127.0.0.1 ({len(files)} XML feeds of "
        f"feeds_realworld, cycled), median of {runs}\n"
    )
    print("| tool | wall time | items | failed sources | peak RSS |")
    print("|---|---:|---:|---:|---:|")
    print(
        f"| `digest fetch` (fresh SQLite) | {ours_s:.2f} s | {report['found']} found, "
        f"{report['stored']} stored | {len(failed)} | "
        f"{max(m.peak_rss_mb for m, _ in ours):.0f} MB |"
    )
    print(
        f"| rss2email 3.14 `r2e run --no-send` (reference) | {theirs_s:.2f} s | "
        f"{theirs[-1][1]} entries | n/a | {max(m.peak_rss_mb for m, _ in theirs):.0f} MB |"
    )
    print(f"| ratio digest / rss2email | {ours_s / theirs_s:.2f}x | | | |")
    print(f"| `digest fetch`, no sources | {idle.seconds:.2f} s | | | {idle.peak_rss_mb:.0f} MB |")
    print(
        f"| `r2e run --no-send`, no feeds | {idle_theirs.seconds:.2f} s | | | "
        f"{idle_theirs.peak_rss_mb:.0f} MB |"
    )
    for source in failed:
        print(f"- {source['name']}: {source['error'][:160]}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3, help="end-to-end runs (median)")
    parser.add_argument("--feeds", type=int, default=200, help="feeds served over HTTP")
    args = parser.parse_args()
    if not CORPUS.is_dir():
        sys.exit(f"the shared corpus is not at {CORPUS}")
    print_realworld(run_folder("feeds_realworld"))
    print_malformed(run_folder("feeds_malformed"))
    print_http(args.runs, args.feeds)


if __name__ == "__main__":
    main()
