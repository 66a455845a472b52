"""Subscriber import speed and memory: `python bench/bench_import.py [--rows N] [--small N]
[--database sqlite|postgres]`.

Generates a CSV of N people (default 1,000,000; names, topics and cadences, 0.1% bad
addresses, 0.5% repeated addresses), then runs the real command

    digest subscribers import FILE --consent ... --json

in a fresh process into a fresh database, for `--small` rows (default 100,000) and for
all N rows, and reports wall time, rows per second and the process's peak RSS. Flat memory
means the two peaks are about the same. `--database postgres` imports into a fresh database
on PostgreSQL at 127.0.0.1:5432 (trust auth; dropped afterwards) instead of a SQLite file.
Then it times `subscribers.service.audience_for` (who gets the next issue) over the full list.

References, measured in the same run on the big file with no database: csv.reader plus
`service.normalise_email` on every address, and csv.reader plus the import's own row checks
(`csvrows.read_row`, which remembers each checked domain). A re-import of the small file into
its now full database shows the cost of updating people who are already there.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import json
import os
import random
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import sqlalchemy as sa  # noqa: E402

from subscribers.csvrows import map_columns, read_row  # noqa: E402
from subscribers.service import SubscriberError, audience_for, normalise_email  # noqa: E402

POSTGRES_SERVER_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"

FIRST = ["Ann", "Bob", "Chloé", "Dmitri", "Eve", "Fatima", "Günter", "Hiro", "Ines", "José"]
LAST = ["Smith", "Müller", "García", "Tanaka", "O'Brien", "Nowak", "Rossi", "Dubois", "Kim"]
DOMAINS = [f"mail{n}.example.org" for n in range(40)] + ["example.com", "bücher.example"]
TOPICS = ["Tech", "Climate", "Science", "Sport"]
CADENCES = ["", "weekly", "daily", "each"]
CONFIG = """version = 1
database_url = "{db}"
[mail]
url = "file://{outbox}"
[[digests]]
name = "weekly"
title = "Weekly"
list = "news"
window = "7d"
cadence = "weekly"
{topics}
"""


@dataclass(frozen=True)
class Run:
    rows: int
    seconds: float
    peak_rss_mb: float
    report: dict[str, object]


def address(number: int) -> str:
    return f"p{number}@{DOMAINS[number % len(DOMAINS)]}"


def write_people(path: Path, rows: int, seed: int = 7) -> None:
    """A deterministic CSV of `rows` people, streamed to disk."""
    rng = random.Random(seed)
    with path.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["Email", "First name", "Last name", "Interests", "Frequency"])
        for number in range(rows):
            first, last = rng.choice(FIRST), rng.choice(LAST)
            roll = rng.random()
            if roll < 0.001:
                email = f"{first.lower()}.{number}@"  # bad address
            elif roll < 0.006 and number > 10:
                email = address(rng.randrange(number))  # a repeat, maybe in another case
                email = email.upper() if roll < 0.003 else email
            else:
                email = address(number)
            topics = ";".join(rng.sample(TOPICS, rng.randrange(3)))
            writer.writerow([email, first, last, topics, rng.choice(CADENCES)])


def reading_seconds(path: Path, check: Callable[[list[str]], object]) -> float:
    """csv.reader over the file with `check` on every row: work no import can skip."""
    started = time.perf_counter()
    with path.open(encoding="utf-8", newline="") as handle:
        reader = csv.reader(handle)
        next(reader)
        for fields in reader:
            with contextlib.suppress(SubscriberError):
                check(fields)
    return time.perf_counter() - started


def row_checker(path: Path) -> Callable[[list[str]], object]:
    """The import's own row check (`csvrows.read_row`) for the file's columns."""
    with path.open(encoding="utf-8", newline="") as handle:
        columns = map_columns(next(csv.reader(handle)), {})
    known = {topic.lower(): topic for topic in TOPICS}
    return lambda fields: read_row((0, fields), columns, known)


@contextlib.contextmanager
def fresh_database(kind: str, folder: Path) -> Iterator[str]:
    """A URL to an empty database: a SQLite file in `folder`, or a new PostgreSQL database."""
    if kind == "sqlite":
        yield f"sqlite:///{folder / 'digest.db'}"
        return
    server = sa.create_engine(POSTGRES_SERVER_URL, isolation_level="AUTOCOMMIT")
    name = f"bench_import_{uuid.uuid4().hex[:12]}"
    with server.connect() as connection:
        connection.exec_driver_sql(f'CREATE DATABASE "{name}"')
    try:
        yield (
            sa.engine.make_url(POSTGRES_SERVER_URL)
            .set(database=name)
            .render_as_string(hide_password=False)
        )
    finally:
        with server.connect() as connection:
            connection.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        server.dispose()


def set_based_seconds(database_url: str, path: Path) -> float:
    """PostgreSQL's own floor for the import's writes: the file's people, already checked and
    each address once, COPYed into a temporary table and written to subscribers,
    subscriptions and consent_events by three INSERT ... SELECTs in one transaction, with the
    tables' constraints and foreign keys as they are. Only the SQL is timed."""
    from digest.store import Store

    check = row_checker(path)
    people: dict[str, tuple[str, str, str, str]] = {}
    with path.open(encoding="utf-8", newline="") as handle:
        reader = csv.reader(handle)
        next(reader)
        for fields in reader:
            with contextlib.suppress(SubscriberError):
                row = check(fields)
                topics = json.dumps(list(row.topics or ()))
                people.setdefault(
                    row.email, (row.email, row.name or "", topics, row.cadence or "weekly")
                )
    Store.open(database_url).engine.dispose()
    engine = sa.create_engine(database_url)
    try:
        with engine.begin() as connection:
            connection.exec_driver_sql(
                "INSERT INTO lists (name, title, created) VALUES ('news', 'News', now())"
            )
        with engine.begin() as connection:
            started = time.perf_counter()
            connection.exec_driver_sql(
                "CREATE TEMPORARY TABLE people (email VARCHAR(320) PRIMARY KEY,"
                " name VARCHAR(200), topics JSON, cadence VARCHAR(20))"
            )
            driver = connection.connection.driver_connection
            with driver.cursor() as cursor, cursor.copy("COPY people FROM STDIN") as copy:
                for values in people.values():
                    copy.write_row(values)
            connection.exec_driver_sql("ANALYZE people")
            for statement in SET_BASED_WRITES:
                connection.exec_driver_sql(statement)
            return time.perf_counter() - started
    finally:
        engine.dispose()


SET_BASED_WRITES = (
    "INSERT INTO subscribers (email, name, status, created, attributes)"
    " SELECT email, name, 'active', now(), '{}' FROM people",
    "INSERT INTO subscriptions (subscriber_id, list_id, topics, frequency, status, updated)"
    " SELECT s.id, l.id, p.topics, p.cadence, 'active', now()"
    " FROM people p JOIN subscribers s ON s.email = p.email, lists l WHERE l.name = 'news'",
    "INSERT INTO consent_events (subscriber_id, list_id, action, note, at, source)"
    " SELECT s.id, l.id, 'imported', 'benchmark', now(), 'import'"
    " FROM people p JOIN subscribers s ON s.email = p.email, lists l WHERE l.name = 'news'",
)


def audience_seconds(database_url: str) -> tuple[float, int]:
    """Time to select the list's audience for a send (everyone on it, every cadence)."""
    engine = sa.create_engine(database_url)
    try:
        with engine.connect() as connection:
            started = time.perf_counter()
            audience = audience_for(connection, "news")
            return time.perf_counter() - started, len(audience)
    finally:
        engine.dispose()


def run_import(folder: Path, csv_file: Path, database_url: str) -> Run:
    """The real CLI in a fresh process; wall time and that process's peak RSS."""
    config = folder / "digest.toml"
    if not config.exists():
        topics = "".join(f'[[digests.topics]]\nname = "{t}"\n' for t in TOPICS)
        config.write_text(
            CONFIG.format(db=database_url, outbox=folder / "outbox", topics=topics),
            encoding="utf-8",
        )
    command = [sys.executable, "-m", "digest", "--config", str(config), "subscribers", "import"]
    command += [str(csv_file), "--consent", "benchmark", "--json"]
    # Output goes to files, not pipes: a pipe nobody reads while we wait would block the child.
    out_path, err_path = folder / "stdout.json", folder / "stderr.txt"
    with out_path.open("wb") as out, err_path.open("wb") as err:
        started = time.perf_counter()
        process = subprocess.Popen(command, stdout=out, stderr=err, cwd=REPO)
        # wait4 gives this child's own peak RSS (ru_maxrss is in KiB on Linux).
        _, status, usage = os.wait4(process.pid, 0)
        seconds = time.perf_counter() - started
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"import failed: {err_path.read_text(errors='replace')}")
    report = json.loads(out_path.read_text(encoding="utf-8"))
    rows = sum(1 for _ in csv_file.open(encoding="utf-8")) - 1
    return Run(rows, seconds, usage.ru_maxrss / 1024, report)


def summary(report: dict[str, object]) -> str:
    rejected = report["rejected"]
    assert isinstance(rejected, list)
    return (
        f"imported {report['imported']}, duplicates {report['duplicates']}, "
        f"rejected {len(rejected)}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--small", type=int, default=100_000)
    parser.add_argument("--database", choices=["sqlite", "postgres"], default="sqlite")
    args = parser.parse_args()
    label = {"sqlite": "SQLite", "postgres": "PostgreSQL"}[args.database]
    with tempfile.TemporaryDirectory(prefix="bench-import-") as scratch:
        root = Path(scratch)
        big, small = root / "big.csv", root / "small.csv"
        write_people(big, args.rows)
        write_people(small, args.small)
        by_service = reading_seconds(big, lambda fields: normalise_email(fields[0]))
        by_rows = reading_seconds(big, row_checker(big))
        results = {}
        with contextlib.ExitStack() as databases:
            urls = {}
            for name, csv_file in (("small", small), ("big", big)):
                folder = root / name
                folder.mkdir()
                urls[name] = databases.enter_context(fresh_database(args.database, folder))
                results[name] = run_import(folder, csv_file, urls[name])
            again = run_import(root / "small", small, urls["small"])
            audience, audience_size = audience_seconds(urls["big"])
            floor = None
            if args.database == "postgres":
                (root / "floor").mkdir()
                url = databases.enter_context(fresh_database("postgres", root / "floor"))
                floor = set_based_seconds(url, big)
    print(f"| measure | {args.small:,} rows | {args.rows:,} rows |")
    print("|---|---|---|")
    s, b = results["small"], results["big"]
    print(f"| import, fresh {label} | {s.seconds:.1f} s | {b.seconds:.1f} s |")
    print(f"| rows per second | {s.rows / s.seconds:,.0f} | {b.rows / b.seconds:,.0f} |")
    print(f"| peak RSS of the import process | {s.peak_rss_mb:.0f} MB | {b.peak_rss_mb:.0f} MB |")
    print(f"| csv.reader + service.normalise_email (reference) | | {by_service:.1f} s |")
    print(f"| csv.reader + the import's row checks (reference) | | {by_rows:.1f} s |")
    print(f"| import / row checks ratio | | {b.seconds / by_rows:.2f}x |")
    if floor is not None:
        print(f"| the same writes as 3 set-based INSERTs from one COPY (floor) | | {floor:.1f} s |")
        print(f"| import / (floor + row checks) | | {b.seconds / (floor + by_rows):.2f}x |")
    print(f"| re-import into the full database | {again.seconds:.1f} s | |")
    print(f"| audience_for over the full list ({audience_size:,} people) | | {audience:.1f} s |")
    print()
    print(f"- {args.small:,} rows: {summary(s.report)}")
    print(f"- {args.rows:,} rows: {summary(b.report)}")
    print(f"- re-import: {summary(again.report)}")


if __name__ == "__main__":
    main()
