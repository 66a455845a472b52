"""A send fanned out to `digest worker` processes: 1 and 2 workers, PostgreSQL, Redis.

`python bench/bench_workers.py [--recipients 1000000] [--workers 0 1 2]`

A `digest demo` folder supplies settings; a throwaway PostgreSQL database
(`digest_bench_<random>` on 127.0.0.1:5432) holds a 30-article issue with its outbox rows
written by Store.queue_recipients (five topic choices, so five variants), as
bench/bench_sendgrid.py does. For each worker count, the rows are set back to queued, that
many `digest worker --concurrency 1` processes start, and `digest send ISSUE --workers` runs
in its own process (0 workers: the reference, `digest send ISSUE --here` in one process);
the fake SendGrid (tests/fake_sendgrid.py) runs in another, fresh each time, and its counts
check that every reader got exactly one message. Reported: the send's wall time, the peak
RSS of the sender and of every worker process (each worker's main process and its pool
process), and the speed-up of N workers over one.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from datetime import UTC, datetime
from pathlib import Path

import sqlalchemy as sa

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.bench_sendgrid import prepare  # noqa: E402
from digest.tables import issues, outbox  # noqa: E402

KEY = "SG.bench-key"
SERVER = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
BROKER = "redis://127.0.0.1:6379/14"


def now() -> datetime:
    return datetime.now(UTC)


def reset(database_url: str, issue_id: int) -> None:
    """Every row owed again, the issue sending (as a send resumed after queueing)."""
    engine = sa.create_engine(database_url)
    with engine.begin() as connection:
        connection.execute(
            sa.update(outbox)
            .where(outbox.c.issue_id == issue_id)
            .values(state="queued", attempts=0, provider_id="", last_error="")
        )
        connection.execute(
            sa.update(issues).where(issues.c.id == issue_id).values(status="sending")
        )
    engine.dispose()


def peak_rss_mb(pid: int) -> float:
    """The process's high-water resident set (VmHWM), while it is alive."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


def pool_of(pid: int) -> list[int]:
    """The worker's pool processes (its children)."""
    children = Path(f"/proc/{pid}/task/{pid}/children")
    return [int(child) for child in children.read_text().split()] if children.exists() else []


def start_worker(env: dict[str, str], log: Path) -> subprocess.Popen:
    with log.open("w") as handle:
        process = subprocess.Popen(
            [sys.executable, "-m", "digest", "worker", "--concurrency=1"],
            env=env,
            stdout=handle,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    deadline = time.monotonic() + 120
    while " ready." not in log.read_text(errors="replace"):
        if process.poll() is not None or time.monotonic() > deadline:
            raise SystemExit(f"worker did not start:\n{log.read_text(errors='replace')}")
        time.sleep(0.2)
    return process


def fake_stats(port: int) -> dict:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/fake/stats", timeout=30) as answer:
        return json.loads(answer.read())


def run_send(env: dict[str, str], issue_id: int, how: str = "--workers") -> tuple[dict, float]:
    """`digest send --workers` (or `--here`) in a child that reports its own peak RSS;
    (report, MB)."""
    code = (
        "import resource, sys; from digest.cli import app\n"
        "try:\n    app(sys.argv[1:], standalone_mode=False)\n"
        "finally:\n"
        "    kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n"
        "    print(f'PEAK_RSS_KB={kb}', file=sys.stderr)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code, "send", str(issue_id), how, "--json"],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    peak = [line for line in done.stderr.splitlines() if line.startswith("PEAK_RSS_KB=")]
    if done.returncode != 0 or not peak:
        raise SystemExit(f"send failed:\n{done.stderr}")
    return json.loads(done.stdout), int(peak[-1].split("=")[1]) / 1024


def measure(folder: Path, database_url: str, issue_id: int, workers: int, work: Path) -> dict:
    reset(database_url, issue_id)
    fake = subprocess.Popen(
        [sys.executable, "-m", "tests.fake_sendgrid", "--api-key", KEY],
        cwd=REPO,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert fake.stdout is not None and fake.stdin is not None
    port = int(fake.stdout.readline())
    env = {
        **os.environ,
        "DIGEST_CONFIG": str(folder / "digest.toml"),
        "DIGEST_DATABASE_URL": database_url,
        "DIGEST_MAIL_URL": f"sendgrid://127.0.0.1:{port}?tls=0",
        "SENDGRID_API_KEY": KEY,
        "DIGEST_BROKER_URL": BROKER,
        "DIGEST_BROKER_QUEUE": f"digest-bench-{uuid.uuid4().hex[:8]}",
    }
    processes = [start_worker(env, work / f"worker-{n}.log") for n in range(workers)]
    try:
        started = time.perf_counter()
        report, sender_mb = run_send(env, issue_id, "--workers" if workers else "--here")
        seconds = time.perf_counter() - started
        pools = [max(peak_rss_mb(child) for child in pool_of(p.pid)) for p in processes]
        mains = [peak_rss_mb(p.pid) for p in processes]
        stats = fake_stats(port)
    finally:
        for process in processes:
            os.killpg(process.pid, 15)
            process.wait(timeout=120)
        fake.stdin.close()
        fake.wait(timeout=60)
    return {
        "seconds": seconds,
        "sender_mb": sender_mb,
        "worker_main_mb": mains,
        "worker_pool_mb": pools,
        "report": report,
        "stats": stats,
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--recipients", type=int, default=1_000_000)
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 1, 2])
    options = parser.parse_args()
    server = sa.create_engine(SERVER, isolation_level="AUTOCOMMIT")
    name = f"digest_bench_{uuid.uuid4().hex[:8]}"
    with server.connect() as connection:
        connection.exec_driver_sql(f'CREATE DATABASE "{name}"')
    database_url = sa.engine.make_url(SERVER).set(database=name).render_as_string(False)
    try:
        with tempfile.TemporaryDirectory() as temporary:
            work = Path(temporary)
            folder = work / "demo"
            subprocess.run(
                [sys.executable, "-m", "digest", "demo", str(folder), "--json"],
                check=True,
                capture_output=True,
            )
            started = time.perf_counter()
            issue_id = prepare(folder, options.recipients, database_url)
            queued = time.perf_counter() - started
            print(f"# {options.recipients:,} readers queued in {queued:.0f} s", flush=True)
            print(
                "| readers | workers | wall | rate | speed-up | sender peak RSS "
                "| worker peak RSS (main / pool) | requests | each reader once |"
            )
            print("|---|---|---|---|---|---|---|---|---|")
            first = 0.0
            for workers in options.workers:
                result = measure(folder, database_url, issue_id, workers, work)
                if workers:  # 0 is the reference: one process, no broker
                    first = first or result["seconds"]
                stats, report = result["stats"], result["report"]
                exact = (
                    stats["distinct"] == options.recipients
                    and stats["duplicates"] == 0
                    and report["sent"] == options.recipients
                )
                rss = ", ".join(
                    f"{main:.0f} / {pool:.0f} MB"
                    for main, pool in zip(
                        result["worker_main_mb"], result["worker_pool_mb"], strict=True
                    )
                )
                speed_up = f"{first / result['seconds']:.2f}x" if workers else "(reference)"
                print(
                    f"| {options.recipients:,} | {workers or 'none (--here)'} "
                    f"| {result['seconds']:.1f} s "
                    f"| {options.recipients / result['seconds']:,.0f}/s "
                    f"| {speed_up} | {result['sender_mb']:.0f} MB "
                    f"| {rss or '-'} | {stats['requests']} | {'yes' if exact else 'NO'} |",
                    flush=True,
                )
    finally:
        with server.connect() as connection:
            connection.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        server.dispose()
    driver_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024
    print(f"# peak RSS of this driver (queues the rows): {driver_mb} MB")


if __name__ == "__main__":
    main()
