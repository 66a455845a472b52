"""Sending an issue to 100k and 1M readers through the SendGrid backend and a fake SendGrid.

`python bench/bench_sendgrid.py [--recipients 100000 1000000] [--batch-sizes 100 1000]`

For each size: a `digest demo` folder supplies settings; a 30-article issue
(tests/render/sample_issue.py) is saved and its outbox rows written with Store.queue_recipients
(five topic choices, so five variants). Each run sends a fresh copy of that database with
`send_issue` in its own process, to the fake SendGrid (tests/fake_sendgrid.py) in another
process, and reports wall time, messages/s and the sender's peak RSS. The in-run reference is
the same send to a backend that answers `sent` at once (outbox, rendering and personalising
only, no HTTP). The fake's counts check that every reader got exactly one message.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Sequence
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from digest.config import load_settings  # noqa: E402
from digest.models import OutgoingMessage, SendResult  # noqa: E402
from digest.store import QueuedRecipient, Store  # noqa: E402
from tests.render.sample_issue import LABELS, sample_issue  # noqa: E402

KEY = "SG.bench-key"
TOPIC_CHOICES: tuple[tuple[str, ...], ...] = (
    (),
    (LABELS[0],),
    (LABELS[1], LABELS[2]),
    (LABELS[3],),
    (LABELS[4], LABELS[0]),
)


def now() -> datetime:
    return datetime.now(UTC)


class AnsweringBackend:
    """The reference: takes every message at once, without a network."""

    async def send(self, batch: Sequence[OutgoingMessage], *, date: datetime) -> list[SendResult]:
        return [SendResult(m.delivery_id, "sent", provider_id="x") for m in batch]


# --- children ----------------------------------------------------------------------------


def prepare(folder: Path, recipients: int, database_url: str | None = None) -> int:
    """Save the issue and queue `recipients` rows (in the folder's database, or in
    `database_url`); returns the issue id."""
    environ = {"DIGEST_DATABASE_URL": database_url} if database_url else {}
    settings = load_settings(folder / "digest.toml", environ)
    store = Store.open(settings.database_url)
    digest = settings.digest(None)
    issue = replace(sample_issue(30), digest=digest.name, period_key=f"bench-{recipients}")
    store.save_articles([a for section in issue.sections for a in section.articles], now=now())
    saved, _created = store.save_issue(issue)
    assert saved.id is not None
    store.set_issue_status(saved.id, "sending", now=now())
    chunk = 50_000
    for start in range(0, recipients, chunk):
        people = [
            QueuedRecipient(n, f"reader{n}@example{n % 50}.org", TOPIC_CHOICES[n % 5])
            for n in range(start + 1, min(start + chunk, recipients) + 1)
        ]
        store.queue_recipients(saved.id, people, now=now())
    store.engine.dispose()
    return saved.id


def send(folder: Path, database_url: str, issue_id: int, mail_url: str, batch: int) -> dict:
    from digest.deliver.backends import backend_from_url
    from digest.pipeline import send_issue

    settings = load_settings(folder / "digest.toml", {"DIGEST_DATABASE_URL": database_url})
    store = Store.open(settings.database_url)
    backend = AnsweringBackend() if mail_url == "answer" else backend_from_url(mail_url)
    started = time.perf_counter()
    report = asyncio.run(
        send_issue(settings, store, issue_id, backend, clock=now, batch_size=batch)
    )
    seconds = time.perf_counter() - started
    peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {
        "seconds": seconds,
        "peak_rss_mb": peak_kb / 1024,
        "sent": report.sent,
        "failed": report.failed,
        "unknown": report.unknown,
        "queued": report.queued,
    }


# --- the run -----------------------------------------------------------------------------


def child(*args: str, env: dict[str, str] | None = None) -> str:
    command = [sys.executable, __file__, *args]
    done = subprocess.run(command, check=True, capture_output=True, text=True, env=env)
    return done.stdout.strip().splitlines()[-1]


def fake_stats(port: int) -> dict:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/fake/stats", timeout=30) as answer:
        return json.loads(answer.read())


def measure(
    folder: Path, base_db: Path, issue_id: int, mail_url: str, batch: int, work: Path
) -> dict:
    database = work / f"run-{batch}.db"
    shutil.copy(base_db, database)
    env = {**os.environ, "SENDGRID_API_KEY": KEY}
    out = child(
        "--send", str(folder), f"sqlite:///{database}", str(issue_id), mail_url, str(batch),
        env=env,
    )  # fmt: skip
    database.unlink()
    return json.loads(out)


def run_size(recipients: int, batch_sizes: Sequence[int], work: Path) -> None:
    folder = work / f"demo-{recipients}"
    subprocess.run(
        [sys.executable, "-m", "digest", "demo", str(folder), "--json"],
        check=True,
        capture_output=True,
    )
    started = time.perf_counter()
    issue_id = int(child("--prepare", str(folder), str(recipients)))
    print(f"# {recipients:,} readers queued in {time.perf_counter() - started:.0f} s", flush=True)
    settings = load_settings(folder / "digest.toml", {})
    base_db = Path(settings.database_url.removeprefix("sqlite:///"))

    for batch in batch_sizes:
        reference = measure(folder, base_db, issue_id, "answer", batch, work)
        fake = subprocess.Popen(
            [sys.executable, "-m", "tests.fake_sendgrid", "--api-key", KEY],
            cwd=REPO,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert fake.stdout is not None and fake.stdin is not None
        port = int(fake.stdout.readline())
        try:
            result = measure(
                folder, base_db, issue_id, f"sendgrid://127.0.0.1:{port}?tls=0", batch, work
            )
            stats = fake_stats(port)
        finally:
            fake.stdin.close()
            fake.wait(timeout=60)
        exact = stats["distinct"] == recipients and stats["duplicates"] == 0
        rate = recipients / result["seconds"]
        print(
            f"| {recipients:,} | {batch} | {result['seconds']:.1f} s | {rate:,.0f}/s "
            f"| {result['peak_rss_mb']:.0f} MB | {stats['requests']} "
            f"| {reference['seconds']:.1f} s ({reference['peak_rss_mb']:.0f} MB) "
            f"| {result['seconds'] / reference['seconds']:.2f}x "
            f"| {'yes' if exact else 'NO'} (sent {result['sent']:,}) |",
            flush=True,
        )


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--prepare":
        print(prepare(Path(sys.argv[2]), int(sys.argv[3])))
        return
    if len(sys.argv) > 1 and sys.argv[1] == "--send":
        folder, url, issue, mail_url, batch = sys.argv[2:7]
        print(json.dumps(send(Path(folder), url, int(issue), mail_url, int(batch))))
        return
    parser = argparse.ArgumentParser()
    parser.add_argument("--recipients", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[100, 1000])
    options = parser.parse_args()
    print(
        "| readers | outbox batch | wall | rate | peak RSS | requests "
        "| reference: no HTTP (RSS) | ratio | each reader once |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as work:
        for recipients in options.recipients:
            run_size(recipients, options.batch_sizes, Path(work))


if __name__ == "__main__":
    main()
