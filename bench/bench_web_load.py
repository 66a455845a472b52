"""Load on loopback against a real `digest serve`: `python bench/bench_web_load.py
[--subscribers 20000] [--seconds 10] [--concurrency 32] [--in-flight 8 32]
[--database sqlite|postgres]`.

A fresh database (a SQLite file, or with `--database postgres` a throwaway database on
127.0.0.1:5432, dropped afterwards) gets N subscribers through `digest subscribers import` and
60 issues that went out (so /archive has a full first page and a second one). Then the real
command `digest serve --no-scheduler` runs in its own process on 127.0.0.1, with its settings
from digest.toml and the environment like any deployment: nothing in it is changed for the
bench, the subscribe rate limiter included. Measured, one kind after the other, each for
`--seconds`:

- GET /healthz, the reference for the ratios, `--concurrency` requests in flight;
- GET /archive, the public list of issues, the same;
- POST /u/TOKEN with the RFC 8058 body `List-Unsubscribe=One-Click`, as a mail provider sends
  it, each request with a distinct valid token of one of the N subscribers; one run for each
  number of requests in flight in `--in-flight`, each with its own share of the subscribers;
- POST /subscribe/LIST for new addresses, the limiter on as shipped (5 at once per client
  address): every client is one browser on its own loopback address (127.1.x.y), which takes
  the form once for its CSRF cookie and field and then subscribes 5 new addresses,
  `--concurrency` browsers at a time; and, for the limiter itself, one address posting 200
  times in a row (all but the first 5 must be answered 429).

With wrk installed (apt-get install wrk), the GETs and one-click POSTs are driven by it (one
process in C: it leaves more of the two cores to the server than Python would), else by
httpx.AsyncClient clients, each with one keep-alive connection; subscribes always by httpx
(cookies, forms, source addresses).

Afterwards it checks in the database that every one-click POST answered 200 unsubscribed its
subscriber with exactly one 'unsubscribed' consent entry and nobody else was unsubscribed,
that every subscribe left a pending subscription and a confirmation email, and that the
server wrote nothing to its log. Any error or failed check makes the exit status 1.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import sqlalchemy as sa

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.bench_import import fresh_database  # noqa: E402
from bench.bench_web import (  # noqa: E402
    CSRF_FIELD,
    ONE_CLICK,
    WRK_ONE_CLICK,
    Phase,
    Server,
    check_unsubscribed,
    consent_counts,
    free_port,
    launch,
    process_cpu,
    report_checks,
    run_wrk,
)
from digest.models import Article, Issue, Section, article_id  # noqa: E402
from digest.store import Store  # noqa: E402
from subscribers.tables import subscribers, subscriptions  # noqa: E402
from subscribers.tokens import make_unsubscribe_token  # noqa: E402

SECRET = "bench-web-load-secret"
LIST = "news"
TOPICS = ("Science", "Culture", "Sport")
ISSUES = 60
CONFIG = """version = 1
name = "Bench News"
base_url = "https://news.example.org"
database_url = "{db}"

[mail]
url = "file://{outbox}"
sender = "Bench News <news@example.org>"

[[digests]]
name = "weekly"
title = "The Weekly"
list = "{list}"
cadence = "weekly"
topics = [{topics}]
"""
# The shipped limiter: this many subscribes at once from one address (digest/web/ratelimit.py).
BURST = 5
# Text each kind of answer must hold; anything else counts as an error.
ANSWERS = {
    "healthz": '"status":"ok"',
    "archive": "The Weekly",
    "one-click": "unsubscribed",
    "subscribe": "Check your inbox",
}
LABELS = {
    "healthz": "GET /healthz (reference)",
    "archive": "GET /archive",
    "one-click": "POST /u/TOKEN, one-click, distinct tokens",
    "subscribe": f"POST /subscribe/{LIST}, {BURST} per client address",
    "limited": f"POST /subscribe/{LIST}, one address (limiter)",
}
BROWSER = httpx.Limits(max_connections=1, max_keepalive_connections=1)


# --- the database ----------------------------------------------------------------------------


def write_config(folder: Path, database_url: str) -> Path:
    topics = ", ".join(f'{{ name = "{topic}" }}' for topic in TOPICS)
    text = CONFIG.format(db=database_url, outbox=folder / "outbox", list=LIST, topics=topics)
    path = folder / "digest.toml"
    path.write_text(text, encoding="utf-8")
    return path


def digest_command(config: Path, *arguments: str) -> list[str]:
    return [sys.executable, "-m", "digest", "--config", str(config), *arguments]


def import_subscribers(folder: Path, config: Path, count: int) -> float:
    """`count` readers through the real import command; its wall time."""
    people = folder / "people.csv"
    with people.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["Email", "Name", "Interests", "Frequency"])
        for n in range(count):
            writer.writerow([f"reader{n}@example.org", f"Reader {n}", TOPICS[n % 3], "weekly"])
    started = time.perf_counter()
    command = digest_command(config, "subscribers", "import", str(people))
    command += ["--list", LIST, "--consent", "benchmark", "--json"]
    done = subprocess.run(command, capture_output=True, text=True, check=False, cwd=folder)
    if done.returncode != 0:
        raise SystemExit(f"import failed: {done.stderr}")
    return time.perf_counter() - started


def publish_issues(store: Store, count: int) -> None:
    """`count` sent issues of three sections each, a week apart, for the archive to list."""
    first = datetime(2025, 1, 6, 8, tzinfo=UTC)
    for n in range(count):
        built = first + timedelta(weeks=n)
        sections = tuple(
            Section(topic, tuple(story(f"{n}-{topic}-{k}", built) for k in range(3)))
            for topic in TOPICS
        )
        store.save_articles([a for s in sections for a in s.articles], now=built)
        issue, _ = store.save_issue(Issue("weekly", f"weekly-{n}", "The Weekly", built, sections))
        assert issue.id is not None
        store.set_issue_status(issue.id, "sent", now=built)


def story(key: str, when: datetime) -> Article:
    url = f"https://source.example.net/{key}"
    return Article(article_id(url), url, f"Story {key}", "Text.", "Source", when)


def subscriber_ids(engine: sa.Engine) -> list[int]:
    with engine.connect() as conn:
        return list(conn.execute(sa.select(subscribers.c.id).order_by(subscribers.c.id)).scalars())


def statuses(engine: sa.Engine) -> Counter[str]:
    with engine.connect() as conn:
        query = sa.select(subscriptions.c.status, sa.func.count()).group_by(subscriptions.c.status)
        return Counter(dict(conn.execute(query).all()))


# --- the server ------------------------------------------------------------------------------


def start_server(config: Path, folder: Path) -> Server:
    """`digest serve --no-scheduler` on a free loopback port, as an operator starts it."""
    port = free_port()
    command = digest_command(config, "serve", "--no-scheduler", "--port", str(port))
    return launch(command, folder, port, SECRET)


# --- httpx clients ---------------------------------------------------------------------------


# One request of a phase: the client to send it on, and its number in the phase.
Request = Callable[[httpx.AsyncClient, int], Awaitable[httpx.Response]]


async def run_for(
    name: str, server: Server, seconds: float, concurrency: int, request: Request
) -> Phase:
    """`concurrency` keep-alive clients sending `request(client, n)` until `seconds` are up."""
    clients = [
        httpx.AsyncClient(base_url=server.base_url, timeout=60, limits=BROWSER)
        for _ in range(concurrency)
    ]
    phase = Phase(name, "httpx", 0, 0.0)
    counter = iter(range(10**9))
    stop_at = time.perf_counter() + seconds

    async def work(client: httpx.AsyncClient) -> None:
        while time.perf_counter() < stop_at:
            n = next(counter)
            started = time.perf_counter()
            try:
                response = await request(client, n)
            except httpx.HTTPError as error:
                phase.errors[type(error).__name__] += 1
                continue
            phase.latencies.append(time.perf_counter() - started)
            phase.requests += 1
            if response.status_code != 200 or ANSWERS[name] not in response.text:
                phase.errors[f"HTTP {response.status_code}"] += 1

    cpu, started = server.cpu_seconds(), time.perf_counter()
    await asyncio.gather(*(work(client) for client in clients))
    phase.seconds = time.perf_counter() - started
    phase.server_cpu = server.cpu_seconds() - cpu
    await asyncio.gather(*(client.aclose() for client in clients))
    return phase


async def subscribe_from_addresses(
    server: Server, browsers: int, concurrency: int, outbox: Path
) -> tuple[Phase, list[str]]:
    """`browsers` readers, each on its own loopback address, each subscribing BURST new
    addresses (what the limiter lets one address do at once); `concurrency` at a time."""
    phase = Phase("subscribe", "httpx", 0, 0.0)
    addresses: list[str] = []
    queue = iter(range(browsers))
    mailed_before = mail_count(outbox)

    async def browser(number: int) -> None:
        source = f"127.1.{number // 250}.{number % 250 + 1}"
        transport = httpx.AsyncHTTPTransport(local_address=source)
        async with httpx.AsyncClient(
            base_url=server.base_url, timeout=60, limits=BROWSER, transport=transport
        ) as client:
            page = await client.get(f"/subscribe/{LIST}")
            found = CSRF_FIELD.search(page.text)
            if page.status_code != 200 or found is None:
                phase.errors[f"form HTTP {page.status_code}"] += 1
                return
            for k in range(BURST):
                address = f"new{number}.{k}@example.org"
                started = time.perf_counter()
                try:
                    response = await client.post(
                        f"/subscribe/{LIST}", data=form(found.group(1), address)
                    )
                except httpx.HTTPError as error:
                    phase.errors[type(error).__name__] += 1
                    continue
                phase.latencies.append(time.perf_counter() - started)
                phase.requests += 1
                addresses.append(address)
                if response.status_code != 200 or ANSWERS["subscribe"] not in response.text:
                    phase.errors[f"HTTP {response.status_code}"] += 1

    async def work() -> None:
        for number in queue:
            await browser(number)

    cpu, started = server.cpu_seconds(), time.perf_counter()
    await asyncio.gather(*(work() for _ in range(concurrency)))
    phase.seconds = time.perf_counter() - started
    # Confirmation emails go out after the answer: the server's work ends when they are written.
    deadline = time.monotonic() + 120
    while mail_count(outbox) < mailed_before + len(addresses) and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    phase.settled_seconds = time.perf_counter() - started
    phase.server_cpu = server.cpu_seconds() - cpu
    return phase, addresses


async def subscribe_from_one_address(server: Server, requests: int) -> Phase:
    """One address subscribing again and again: the limiter answers all but BURST with 429."""
    phase = Phase("limited", "httpx", 0, 0.0)
    transport = httpx.AsyncHTTPTransport(local_address="127.2.0.1")
    async with httpx.AsyncClient(
        base_url=server.base_url, timeout=60, limits=BROWSER, transport=transport
    ) as client:
        page = await client.get(f"/subscribe/{LIST}")
        found = CSRF_FIELD.search(page.text)
        assert found is not None, page.text
        cpu, started = server.cpu_seconds(), time.perf_counter()
        for n in range(requests):
            begun = time.perf_counter()
            response = await client.post(
                f"/subscribe/{LIST}", data=form(found.group(1), f"lone{n}@example.org")
            )
            phase.latencies.append(time.perf_counter() - begun)
            phase.requests += 1
            expected = 200 if n < BURST else 429
            if response.status_code != expected:
                phase.errors[f"HTTP {response.status_code} (expected {expected})"] += 1
        phase.seconds = time.perf_counter() - started
        phase.server_cpu = server.cpu_seconds() - cpu
    return phase


def form(csrf_field: str, address: str) -> dict[str, object]:
    return {
        "csrf_token": csrf_field,
        "email": address,
        "name": "Bench Reader",
        "topic": list(TOPICS),
        "cadence": "weekly",
        "website": "",  # the honeypot, left empty as people leave it
    }


def mail_count(outbox: Path) -> int:
    return sum(1 for _ in outbox.glob("*.eml")) if outbox.is_dir() else 0


def get_path(path: str) -> Request:
    async def request(client: httpx.AsyncClient, n: int) -> httpx.Response:
        return await client.get(path)

    return request


def post_tokens(tokens: Sequence[str]) -> Request:
    async def request(client: httpx.AsyncClient, n: int) -> httpx.Response:
        return await client.post(f"/u/{tokens[n % len(tokens)]}", data=ONE_CLICK)

    return request


# --- the run ---------------------------------------------------------------------------------

# A measured phase and how many requests it kept in flight.
Measured = tuple[Phase, int]


def measure_reads_and_one_click(
    server: Server,
    folder: Path,
    pools: Sequence[Sequence[str]],
    args: argparse.Namespace,
    wrk: bool,
) -> list[Measured]:
    """/healthz and /archive, then the one-click POSTs at each of `args.in_flight`, each level
    with its own pool of tokens; with wrk or httpx."""
    c, s = args.concurrency, args.seconds
    if wrk:
        measured = [
            (run_wrk("healthz", server, "/healthz", "", c, s), c),
            (run_wrk("archive", server, "/archive", "", c, s), c),
        ]
        for level, tokens in zip(args.in_flight, pools, strict=True):
            tokens_file = folder / f"tokens-{level}.txt"
            tokens_file.write_text("\n".join(tokens) + "\n", encoding="ascii")
            script = WRK_ONE_CLICK.replace("TOKENS", str(tokens_file))
            measured.append((run_wrk("one-click", server, "/", script, level, s), level))
        return measured

    async def measure() -> list[Measured]:
        measured = [
            (await run_for("healthz", server, s, c, get_path("/healthz")), c),
            (await run_for("archive", server, s, c, get_path("/archive")), c),
        ]
        for level, tokens in zip(args.in_flight, pools, strict=True):
            phase = await run_for("one-click", server, s, level, post_tokens(tokens))
            measured.append((phase, level))
        return measured

    return asyncio.run(measure())


def check_one_click(
    engine: sa.Engine,
    runs: Sequence[tuple[Measured, Sequence[int]]],
    before: Counter[str],
) -> list[str]:
    """Every answered POST unsubscribed one reader of its run's pool, once; nobody else was."""
    logged = consent_counts(engine, "unsubscribed")
    problems: list[str] = []
    ended = 0
    for (phase, in_flight), pool in runs:
        what = f"one-click ({in_flight} in flight)"
        if phase.requests > len(pool):
            problems.append(f"{what}: {phase.requests} POSTs for a pool of {len(pool)}")
            continue
        done = [subscriber for subscriber in pool if logged[subscriber]]
        ended += len(done)
        problems += check_unsubscribed(engine, done, what)
        # wrk stops with requests in flight: served, maybe, but not counted as answered.
        if not phase.requests <= len(done) <= phase.requests + in_flight:
            problems.append(f"{what}: {len(done)} unsubscribed for {phase.requests} answers")
    changed = statuses(engine)["unsubscribed"] - before["unsubscribed"]
    if changed != ended:
        problems.append(f"one-click: {changed} subscriptions ended, {ended} by the POSTs")
    return problems


def check_subscribed(engine: sa.Engine, addresses: Sequence[str], outbox: Path) -> list[str]:
    query = (
        sa.select(subscribers.c.email, subscriptions.c.status)
        .join(subscriptions, subscriptions.c.subscriber_id == subscribers.c.id)
        .where(subscribers.c.email.like("new%"))
    )
    with engine.connect() as conn:
        found = dict(conn.execute(query).all())
    pending = sum(1 for address in addresses if found.get(address) == "pending")
    problems = []
    if pending != len(addresses):
        problems.append(f"subscribe: {pending} pending subscriptions for {len(addresses)} answers")
    # The lone address's BURST subscribes also owe their confirmation email.
    if mail_count(outbox) != len(addresses) + BURST:
        problems.append(f"{mail_count(outbox)} confirmation emails for {len(addresses) + BURST}")
    return problems


def table(measured: Sequence[Measured]) -> str:
    references = {p.tool: p for p, _ in measured if p.name == "healthz"}
    reference = references.get("wrk") or references["httpx"]
    lines = [
        "| request | client | in flight | requests | requests/s | p50 | p95 | p99 | errors "
        "| vs /healthz | server CPU per request |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for phase, in_flight in measured:
        errors = ", ".join(f"{k}: {v}" for k, v in phase.errors.items()) or "0"
        lines.append(
            f"| {LABELS[phase.name]} | {phase.tool} | {in_flight} | {phase.requests:,} "
            f"| {phase.per_second:,.0f} | {phase.percentile(50) * 1000:.1f} ms "
            f"| {phase.percentile(95) * 1000:.1f} ms "
            f"| {phase.percentile(99) * 1000:.1f} ms | {errors} "
            f"| {phase.per_second / reference.per_second:.2f}x "
            f"| {phase.server_cpu / phase.requests * 1000:.2f} ms |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--subscribers", type=int, default=20_000, help="readers on the list")
    parser.add_argument("--seconds", type=int, default=10, help="each measured phase's length")
    parser.add_argument("--concurrency", type=int, default=32, help="requests in flight")
    parser.add_argument(
        "--in-flight",
        type=int,
        nargs="+",
        default=[8, 32],
        help="one-click POSTs in flight, one run each (default: 8 32)",
    )
    parser.add_argument("--browsers", type=int, default=400, help="subscribing client addresses")
    parser.add_argument("--database", choices=["sqlite", "postgres"], default="sqlite")
    parser.add_argument("--no-wrk", action="store_true", help="httpx even if wrk is installed")
    args = parser.parse_args()
    if min(args.subscribers, args.seconds, args.concurrency, args.browsers, *args.in_flight) < 1:
        parser.error("every number must be at least 1")
    wrk = not args.no_wrk and shutil.which("wrk") is not None
    load_before = os.getloadavg()

    with tempfile.TemporaryDirectory(prefix="digest-bench-load-") as tmp:
        folder = Path(tmp)
        with fresh_database(args.database, folder) as database_url:
            config = write_config(folder, database_url)
            import_seconds = import_subscribers(folder, config, args.subscribers)
            store = Store.open(database_url)
            publish_issues(store, ISSUES)
            readers = subscriber_ids(store.engine)
            # Each one-click run its own readers: no token is POSTed twice.
            share = len(readers) // len(args.in_flight)
            pools = [readers[n * share : (n + 1) * share] for n in range(len(args.in_flight))]
            tokens = [[make_unsubscribe_token(SECRET, r, LIST) for r in pool] for pool in pools]
            before = statuses(store.engine)
            outbox = folder / "outbox"
            server = start_server(config, folder)
            client_cpu = process_cpu()
            try:
                measured = measure_reads_and_one_click(server, folder, tokens, args, wrk)
                subscribed, addresses = asyncio.run(
                    subscribe_from_addresses(server, args.browsers, args.concurrency, outbox)
                )
                limited = asyncio.run(subscribe_from_one_address(server, 200))
                measured += [(subscribed, args.concurrency), (limited, 1)]
            finally:
                server.stop()
            client_cpu = process_cpu() - client_cpu
            one_click = [(m, pool) for m, pool in zip(measured[2:], pools, strict=False)]
            problems = check_one_click(store.engine, one_click, before)
            problems += check_subscribed(store.engine, addresses, outbox)
            problems += [
                f"{LABELS[phase.name]} ({phase.tool}): {dict(phase.errors)}"
                for phase, _ in measured
                if phase.errors
            ]
            server_log = server.log.read_text(errors="replace")
            store.engine.dispose()

    print(
        f"{args.database}, {args.subscribers:,} subscribers (imported in {import_seconds:.1f} s), "
        f"{ISSUES} issues; {args.seconds} s per phase; {os.cpu_count()} cores, load average "
        f"{load_before[0]:.1f} before, {os.getloadavg()[0]:.1f} after\n"
    )
    print(table(measured))
    settled = (subscribed.settled_seconds or subscribed.seconds) - subscribed.seconds
    print(
        f"\nsubscribe: {len(addresses):,} new addresses from {args.browsers} client addresses; "
        f"the last confirmation email was written {settled:.1f} s after the last answer. "
        f"The bench's own (Python) CPU: {client_cpu:.1f} s."
    )
    report_checks(problems, server_log)


if __name__ == "__main__":
    main()
