"""Public pages' request throughput: `python bench/bench_web.py [--requests N] [--concurrency C]`.

Serves the public app the way `digest serve` does (uvicorn, one worker, its own process) on a
fresh SQLite database made by the digest migrations (`Store.open`), with notices written to a
file:// outbox, so SMTP is not what is measured. Then, with C requests in flight (C clients,
each an httpx.AsyncClient with its own keep-alive connection and cookies), it sends N of each:

- GET /healthz, the reference;
- POST /subscribe/LIST, each for a new address: every client fetches the form once for its
  CSRF cookie and hidden field, then posts again and again with them;
- POST /u/TOKEN with the RFC 8058 body `List-Unsubscribe=One-Click`, one per subscriber added
  beforehand with the service functions (tokens from `make_unsubscribe_token`).

With `wrk` installed (apt-get install wrk), /healthz and the one-click POSTs are measured by it
too: one process in C, it leaves more of the machine to the server than a Python client does.

It reports requests/s, p50 and p99 latency, errors, the ratio to /healthz measured the same way
in the same run, and the server's CPU time per request (until the last confirmation email was
written, for subscribes). Then 4 POSTs at once to each of 100 unsubscribe links and 4 subscribes
at once for each of 100 new addresses (retrying mail providers, double clicks). Afterwards it
checks in the database that every subscribe left one person with one pending subscription and
a 'requested' consent-log entry per request, that every confirmation email owed was written,
and that every one-click POST unsubscribed its subscriber with exactly one 'unsubscribed' entry.
Any error, failed check or line in the server's log makes the exit status 1.

All requests come from 127.0.0.1, one rate-limit bucket, so the server is the public app with
its subscribe rate limit raised through `public_app(rate_limit=...)`; everything else is as
`public_app` builds it.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import resource
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import httpx
import sqlalchemy as sa

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from digest.config import load_settings  # noqa: E402
from digest.store import Store  # noqa: E402
from digest.web.ratelimit import RateLimit  # noqa: E402
from digest.web.serving import public_app  # noqa: E402
from subscribers import service  # noqa: E402
from subscribers.tables import consent_events, lists, subscribers, subscriptions  # noqa: E402
from subscribers.tokens import make_unsubscribe_token  # noqa: E402

SECRET = "bench-web-secret"
LIST = "news"
TOPICS = ("Science", "Culture", "Sport")
CONFIG = """version = 1
name = "Bench News"
base_url = "https://news.example.org"
database_url = "sqlite:///{db}"

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
ONE_CLICK = {"List-Unsubscribe": "One-Click"}
CSRF_FIELD = re.compile(r'name="csrf_token" value="([^"]+)"')
# Text of the page each kind of request must answer with; anything else counts as an error.
ANSWERS = {"healthz": '"status":"ok"', "subscribe": "Check your inbox", "one-click": "unsubscribed"}
# Subscribers whose unsubscribe link, and new addresses whose subscribe form, get several POSTs
# at once (mail providers do retry; people press buttons twice).
RACED = 100
RACED_POSTS = 4
WARMUP = 50
# Each client is one browser: one keep-alive connection, one cookie jar.
ONE_CONNECTION = httpx.Limits(max_connections=1, max_keepalive_connections=1)


# --- the server ------------------------------------------------------------------------------


def serve(config: Path, port: int, burst: int) -> None:
    """The server process: what `digest serve` runs, with the rate limit raised to `burst`."""
    import uvicorn

    settings = load_settings(config, os.environ)
    store = Store.open(settings.database_url)
    app = public_app(settings, store, rate_limit=RateLimit(burst=burst))
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning")


@dataclass
class Server:
    process: subprocess.Popen[bytes]
    base_url: str
    log: Path

    def cpu_seconds(self) -> float:
        """User + system CPU the server process has used so far (Linux /proc)."""
        fields = Path(f"/proc/{self.process.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_server(config: Path, folder: Path, burst: int) -> Server:
    port = free_port()
    command = [sys.executable, __file__, "--serve", str(config), "--port", str(port)]
    command += ["--burst", str(burst)]
    return launch(command, folder, port, SECRET)


def launch(command: list[str], folder: Path, port: int, secret: str) -> Server:
    """Run the server `command` (listening on `port`, logging to folder/server.log) and
    return once it answers /healthz."""
    log = folder / "server.log"
    env = {**os.environ, "DIGEST_SECRET_KEY": secret}
    with log.open("wb") as handle:
        process = subprocess.Popen(command, stdout=handle, stderr=handle, env=env, cwd=folder)
    server = Server(process, f"http://127.0.0.1:{port}", log)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"server exited at start:\n{log.read_text(errors='replace')}")
        try:
            if httpx.get(f"{server.base_url}/healthz", timeout=1).status_code == 200:
                return server
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    server.stop()
    raise SystemExit(f"server did not answer /healthz within 60 s; log: {log}")


# --- the database ----------------------------------------------------------------------------


def write_config(folder: Path) -> Path:
    topics = ", ".join(f'{{ name = "{topic}" }}' for topic in TOPICS)
    text = CONFIG.format(
        db=folder / "digest.db", outbox=folder / "outbox", list=LIST, topics=topics
    )
    path = folder / "digest.toml"
    path.write_text(text, encoding="utf-8")
    return path


def add_subscribers(store: Store, count: int, first: int = 0) -> list[int]:
    """`count` active subscribers of the list, added as an operator would; their ids."""
    now = datetime.now(UTC)
    with store.transaction() as conn:
        service.ensure_list(conn, LIST, title="The Weekly", now=now)
        return [
            service.add_subscriber(
                conn, f"reader{n}@example.org", list_name=LIST, consent="benchmark", now=now
            ).id
            for n in range(first, first + count)
        ]


def subscription_statuses(engine: sa.Engine) -> dict[str, str]:
    """Address → status of its subscription to the list."""
    query = (
        sa.select(subscribers.c.email, subscriptions.c.status)
        .join(subscriptions, subscriptions.c.subscriber_id == subscribers.c.id)
        .join(lists, lists.c.id == subscriptions.c.list_id)
        .where(lists.c.name == LIST)
    )
    with engine.connect() as conn:
        return {email: status for email, status in conn.execute(query)}


def consent_counts(engine: sa.Engine, action: str, source: str | None = None) -> Counter[int]:
    """Subscriber id → how many consent-log entries of this action (from `source`) it has."""
    query = sa.select(consent_events.c.subscriber_id).where(consent_events.c.action == action)
    if source is not None:
        query = query.where(consent_events.c.source == source)
    with engine.connect() as conn:
        return Counter(conn.execute(query).scalars())


def check_subscribed(
    engine: sa.Engine, addresses: Sequence[str], each: int, what: str
) -> list[str]:
    """Problems with subscribes sent `each` times per address: each address must have a pending
    subscription (the tables' unique keys allow one) and one 'requested' entry per request."""
    statuses = subscription_statuses(engine)
    with engine.connect() as conn:
        ids = dict(conn.execute(sa.select(subscribers.c.email, subscribers.c.id)).all())
    requested = consent_counts(engine, "requested")
    counts = {
        "addresses without a pending subscription": sum(
            1 for a in addresses if statuses.get(a) != "pending"
        ),
        f"addresses without exactly {each} 'requested' entries": sum(
            1 for a in addresses if requested[ids.get(a, -1)] != each
        ),
    }
    return [f"{what}: {count} {text}" for text, count in counts.items() if count]


def check_mailed(outbox: Path, expected: int) -> list[str]:
    """Every subscribe that left a pending subscription owes one confirmation email."""
    mailed = mail_count(outbox)
    return [] if mailed == expected else [f"{mailed} confirmation emails for {expected} owed"]


def mail_count(outbox: Path) -> int:
    return sum(1 for _ in outbox.glob("*.eml")) if outbox.is_dir() else 0


def until_mailed(
    outbox: Path, expected: int, timeout: float = 120
) -> Callable[[], Awaitable[None]]:
    """Confirmation emails go out after the answer: wait until `expected` have landed."""

    async def settle() -> None:
        deadline = time.monotonic() + timeout
        while mail_count(outbox) < expected and time.monotonic() < deadline:
            await asyncio.sleep(0.05)

    return settle


def check_unsubscribed(engine: sa.Engine, ids: Sequence[int], what: str) -> list[str]:
    """Problems with the unsubscribes: each subscription ended, logged once, as one-click."""
    with engine.connect() as conn:
        query = sa.select(subscriptions.c.subscriber_id, subscriptions.c.status)
        statuses = dict(conn.execute(query).all())  # one list, so one row per subscriber
    logged = consent_counts(engine, "unsubscribed")
    one_click = consent_counts(engine, "unsubscribed", source="one-click")
    still = sum(1 for subscriber in ids if statuses.get(subscriber) != "unsubscribed")
    not_once = sum(1 for subscriber in ids if logged[subscriber] != 1 or not one_click[subscriber])
    problems = [f"{what}: {still} subscriptions not unsubscribed"] if still else []
    if not_once:
        problems.append(
            f"{what}: {not_once} subscribers without exactly one 'unsubscribed' entry (one-click)"
        )
    return problems


# --- the clients -----------------------------------------------------------------------------


@dataclass
class Phase:
    """One kind of request, measured."""

    name: str
    tool: str
    requests: int
    seconds: float
    latencies: list[float] = field(default_factory=list)
    errors: Counter[str] = field(default_factory=Counter)
    server_cpu: float = 0.0
    client_cpu: float = 0.0
    quantiles: dict[int, float] = field(default_factory=dict)  # wrk's, when not from latencies
    settled_seconds: float | None = None  # until the work after the last answer was done

    @property
    def per_second(self) -> float:
        return self.requests / self.seconds

    def percentile(self, p: int) -> float:
        if p in self.quantiles:
            return self.quantiles[p]
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


Send = Callable[[httpx.AsyncClient, object, str], Awaitable[httpx.Response]]
Prepare = Callable[[httpx.AsyncClient], Awaitable[object]]


async def no_preparation(client: httpx.AsyncClient) -> object:
    return None


async def run_clients(
    name: str,
    server: Server,
    items: Sequence[str],
    concurrency: int,
    send: Send,
    prepare: Prepare = no_preparation,
    settle: Callable[[], Awaitable[None]] | None = None,
) -> Phase:
    """Send one request per item, `concurrency` clients at a time, each its own connection.

    `settle` waits for work the server does after answering (the confirmation emails); the
    server's CPU time is counted until it is done.
    """
    clients = [
        httpx.AsyncClient(base_url=server.base_url, timeout=120, limits=ONE_CONNECTION)
        for _ in range(concurrency)
    ]
    states = await asyncio.gather(*(prepare(client) for client in clients))
    queue = iter(items)
    phase = Phase(name, "httpx", len(items), 0.0)

    async def work(client: httpx.AsyncClient, state: object) -> None:
        for item in queue:
            started = time.perf_counter()
            try:
                response = await send(client, state, item)
            except httpx.HTTPError as error:
                phase.errors[type(error).__name__] += 1
                continue
            phase.latencies.append(time.perf_counter() - started)
            if response.status_code != 200 or ANSWERS[name] not in response.text:
                phase.errors[f"HTTP {response.status_code}"] += 1

    server_cpu, client_cpu = server.cpu_seconds(), process_cpu()
    started = time.perf_counter()
    await asyncio.gather(
        *(work(client, state) for client, state in zip(clients, states, strict=True))
    )
    phase.seconds = time.perf_counter() - started
    if settle is not None:
        await settle()
        phase.settled_seconds = time.perf_counter() - started
    phase.server_cpu = server.cpu_seconds() - server_cpu
    phase.client_cpu = process_cpu() - client_cpu
    await asyncio.gather(*(client.aclose() for client in clients))
    return phase


def process_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def get_healthz(client: httpx.AsyncClient, state: object, item: str) -> httpx.Response:
    return await client.get("/healthz")


async def fetch_form(client: httpx.AsyncClient) -> object:
    """The form's CSRF field; the client's cookie jar keeps the cookie it pairs with."""
    page = await client.get(f"/subscribe/{LIST}")
    found = CSRF_FIELD.search(page.text)
    if page.status_code != 200 or found is None or "digest_csrf" not in client.cookies:
        raise SystemExit(f"GET /subscribe/{LIST}: no CSRF cookie and field ({page.status_code})")
    return found.group(1)


async def post_subscribe(client: httpx.AsyncClient, csrf: object, address: str) -> httpx.Response:
    form = {
        "csrf_token": str(csrf),
        "email": address,
        "name": "Bench Reader",
        "topic": list(TOPICS),
        "cadence": "weekly",
        "website": "",  # the honeypot, left empty as people leave it
    }
    return await client.post(f"/subscribe/{LIST}", data=form)


async def post_one_click(client: httpx.AsyncClient, state: object, token: str) -> httpx.Response:
    return await client.post(f"/u/{token}", data=ONE_CLICK)


def tokens_for(ids: Sequence[int]) -> list[str]:
    return [make_unsubscribe_token(SECRET, subscriber, LIST) for subscriber in ids]


# --- wrk -------------------------------------------------------------------------------------

# One wrk thread POSTs the tokens in file order, one per request, for a fixed time; the pool is
# made large enough that none is used twice (the check below says so if one was).
WRK_ONE_CLICK = """
local tokens, next_token = {}, 1
for line in io.lines("TOKENS") do table.insert(tokens, line) end
function request()
  local token = tokens[(next_token - 1) % #tokens + 1]
  next_token = next_token + 1
  return wrk.format("POST", "/u/" .. token,
    {["Content-Type"] = "application/x-www-form-urlencoded"}, "List-Unsubscribe=One-Click")
end
"""
# wrk's own summary, in one line the bench reads (latencies in microseconds).
WRK_DONE = """
function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format("RESULT %d %d %d %d %d %d %d\\n", summary.requests, summary.duration,
    e.connect + e.read + e.write + e.timeout, e.status, latency:percentile(50),
    latency:percentile(95), latency:percentile(99)))
end
"""
WRK_RESULT = re.compile(r"RESULT (\d+) (\d+) (\d+) (\d+) (\d+) (\d+) (\d+)")


def run_wrk(
    name: str, server: Server, path: str, script: str, concurrency: int, seconds: int
) -> Phase:
    """wrk, one thread, `concurrency` connections, for `seconds`."""
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as handle:
        handle.write(script + WRK_DONE)
    command = ["wrk", "-t1", f"-c{concurrency}", f"-d{seconds}s", "--timeout", "60s"]
    command += ["-s", handle.name, f"{server.base_url}{path}"]
    server_cpu = server.cpu_seconds()
    finished = subprocess.run(command, capture_output=True, text=True, check=False)
    os.unlink(handle.name)
    found = WRK_RESULT.search(finished.stdout)
    if finished.returncode != 0 or found is None:
        raise SystemExit(f"wrk failed: {finished.stderr or finished.stdout}")
    requests, micros, socket_errors, status_errors, p50, p95, p99 = map(int, found.groups())
    phase = Phase(name, "wrk", requests, micros / 1e6)
    phase.server_cpu = server.cpu_seconds() - server_cpu
    phase.quantiles = {50: p50 / 1e6, 95: p95 / 1e6, 99: p99 / 1e6}
    if socket_errors:
        phase.errors["socket errors"] = socket_errors
    if status_errors:
        phase.errors["HTTP not 2xx/3xx"] = status_errors
    return phase


def measure_wrk(
    server: Server, store: Store, folder: Path, concurrency: int, seconds: int, expected_rate: float
) -> tuple[list[Phase], list[int]]:
    """/healthz and one-click POSTs with wrk; the pool of subscribers the POSTs went to."""
    # wrk outpaces the Python client; four times its rate leaves room to spare.
    pool = add_subscribers(store, round(expected_rate * 4 * seconds) + 1000, first=10**7)
    tokens_file = folder / "tokens.txt"
    tokens_file.write_text("\n".join(tokens_for(pool)) + "\n", encoding="ascii")
    script = WRK_ONE_CLICK.replace("TOKENS", str(tokens_file))
    healthz = run_wrk("healthz", server, "/healthz", "", concurrency, seconds)
    one_click = run_wrk("one-click", server, "/", script, concurrency, seconds)
    return [healthz, one_click], pool


# --- the report ------------------------------------------------------------------------------


def table(phases: Sequence[Phase]) -> str:
    references = {p.tool: p for p in phases if p.name == "healthz"}
    lines = [
        "| request | client | requests | requests/s | p50 | p99 | errors | vs /healthz "
        "| server CPU per request |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for phase in phases:
        reference = references[phase.tool]
        errors = ", ".join(f"{k}: {v}" for k, v in phase.errors.items()) or "0"
        lines.append(
            f"| {LABELS[phase.name]} | {phase.tool} | {phase.requests:,} "
            f"| {phase.per_second:,.0f} | {phase.percentile(50) * 1000:.1f} ms "
            f"| {phase.percentile(99) * 1000:.1f} ms | {errors} "
            f"| {phase.per_second / reference.per_second:.2f}x "
            f"| {phase.server_cpu / phase.requests * 1000:.2f} ms |"
        )
    return "\n".join(lines)


LABELS = {
    "healthz": "GET /healthz (reference)",
    "subscribe": f"POST /subscribe/{LIST}, new address",
    "one-click": "POST /u/TOKEN, one-click",
}


# --- the run ---------------------------------------------------------------------------------


async def measure_httpx(
    server: Server,
    outbox: Path,
    warm: Sequence[str],
    addresses: Sequence[str],
    concurrency: int,
    tokens: Sequence[str],
) -> list[Phase]:
    """Warm up, then /healthz, subscribes and one-click POSTs, one kind after the other."""
    warmed = until_mailed(outbox, len(warm))
    await run_clients("healthz", server, [""] * len(warm), concurrency, get_healthz)
    await run_clients("subscribe", server, warm, concurrency, post_subscribe, fetch_form, warmed)
    health = [""] * len(addresses)
    mailed = until_mailed(outbox, len(warm) + len(addresses))
    return [
        await run_clients("healthz", server, health, concurrency, get_healthz),
        await run_clients(
            "subscribe", server, addresses, concurrency, post_subscribe, fetch_form, mailed
        ),
        await run_clients("one-click", server, tokens, concurrency, post_one_click),
    ]


async def race(
    server: Server, outbox: Path, mailed: int, tokens: Sequence[str], addresses: Sequence[str]
) -> list[Phase]:
    """RACED_POSTS requests at once for each token and each address, from as many clients: a
    mail provider retrying a one-click POST, a reader pressing Subscribe again."""
    tokens = [token for token in tokens for _ in range(RACED_POSTS)]
    addresses = [address for address in addresses for _ in range(RACED_POSTS)]
    settle = until_mailed(outbox, mailed + len(addresses))
    return [
        await run_clients("one-click", server, tokens, RACED_POSTS, post_one_click),
        await run_clients(
            "subscribe", server, addresses, RACED_POSTS, post_subscribe, fetch_form, settle
        ),
    ]


def check_wrk_pool(
    engine: sa.Engine, pool: Sequence[int], phase: Phase, in_flight: int
) -> list[str]:
    """wrk counts answers, not which tokens: check counts, and that nobody was logged twice."""
    if phase.requests > len(pool):
        return [f"one-click (wrk): {phase.requests} POSTs for a pool of {len(pool)}: tokens reused"]
    logged = consent_counts(engine, "unsubscribed")
    done = [subscriber for subscriber in pool if logged[subscriber]]
    problems = check_unsubscribed(engine, done, "one-click (wrk)")
    # Requests still in flight when wrk stopped may have been served but not counted.
    if not phase.requests <= len(done) <= phase.requests + in_flight:
        problems.append(f"one-click (wrk): {len(done)} unsubscribed for {phase.requests} answers")
    return problems


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=2000, help="requests of each kind")
    parser.add_argument("--concurrency", type=int, default=32, help="requests in flight")
    parser.add_argument("--wrk-seconds", type=int, default=10, help="each wrk run's duration")
    parser.add_argument("--no-wrk", action="store_true", help="skip wrk even if installed")
    parser.add_argument("--serve", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--burst", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve is not None:
        serve(args.serve, args.port, args.burst)
        return
    if args.requests < 1 or args.concurrency < 1 or args.wrk_seconds < 1:
        parser.error("--requests, --concurrency and --wrk-seconds must be at least 1")
    use_wrk = not args.no_wrk and shutil.which("wrk") is not None

    with tempfile.TemporaryDirectory(prefix="digest-bench-web-") as tmp:
        folder = Path(tmp)
        config = write_config(folder)
        store = Store.open(load_settings(config, {"DIGEST_SECRET_KEY": SECRET}).database_url)
        ids = add_subscribers(store, args.requests + RACED)
        clicked, raced_ids = ids[: args.requests], ids[args.requests :]
        addresses = [f"new{n}@example.org" for n in range(args.requests)]
        warm = [f"warm{n}@example.org" for n in range(WARMUP)]
        raced_addresses = [f"again{n}@example.org" for n in range(RACED)]
        owed = len(addresses) + len(warm) + RACED * RACED_POSTS  # confirmation emails
        outbox = folder / "outbox"
        server = start_server(config, folder, burst=owed)
        try:
            tokens = tokens_for(clicked)
            phases = asyncio.run(
                measure_httpx(server, outbox, warm, addresses, args.concurrency, tokens)
            )
            raced = asyncio.run(
                race(
                    server,
                    outbox,
                    owed - RACED * RACED_POSTS,
                    tokens_for(raced_ids),
                    raced_addresses,
                )
            )
            pool: list[int] = []
            if use_wrk:
                wrk_phases, pool = measure_wrk(
                    server, store, folder, args.concurrency, args.wrk_seconds, phases[2].per_second
                )
                phases += wrk_phases
        finally:
            server.stop()

        engine = store.engine
        problems = check_subscribed(engine, [*addresses, *warm], 1, "subscribe")
        problems += check_subscribed(engine, raced_addresses, RACED_POSTS, "racing subscribes")
        problems += check_mailed(outbox, owed)
        problems += check_unsubscribed(engine, clicked, "one-click (httpx)")
        problems += check_unsubscribed(engine, raced_ids, "racing one-click POSTs")
        if use_wrk:
            problems += check_wrk_pool(engine, pool, phases[-1], args.concurrency)
        problems += [
            f"{phase.name} ({phase.tool}): {dict(phase.errors)}"
            for phase in (*phases, *raced)
            if phase.errors
        ]
        server_log = server.log.read_text(errors="replace")
        store.engine.dispose()

    print(
        f"{args.requests:,} requests of each kind with httpx, wrk {args.wrk_seconds} s each; "
        f"{args.concurrency} in flight; {os.cpu_count()} cores, load {os.getloadavg()[0]:.1f}\n"
    )
    print(table(phases))
    client_cpu = ", ".join(
        f"{p.name} {p.client_cpu / p.requests * 1000:.2f} ms" for p in phases if p.tool == "httpx"
    )
    print(f"\nhttpx client CPU per request: {client_cpu}")
    for phase in phases:
        if phase.settled_seconds is not None:
            print(
                f"{phase.name}: the last confirmation email was written "
                f"{phase.settled_seconds - phase.seconds:.1f} s after the last answer; counting "
                f"until then, {phase.requests / phase.settled_seconds:,.0f} requests/s"
            )
    for phase in raced:
        print(
            f"racing {phase.name}: {RACED} x {RACED_POSTS} at once, {phase.requests} answered, "
            f"errors {sum(phase.errors.values())}"
        )
    report_checks(problems, server_log)


def report_checks(problems: list[str], server_log: str) -> None:
    """Print the checks' verdict; exit 1 if any failed or the server logged anything (at
    uvicorn's "warning" level, as `digest serve` runs it, a healthy server writes nothing)."""
    if server_log.strip():
        problems.append("the server wrote to its log:\n" + server_log[-4000:])
    print("\nchecks: " + ("all passed" if not problems else "FAILED"))
    for problem in problems:
        print(f"- {problem}")
    if problems:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
