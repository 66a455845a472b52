"""A deployment in miniature: PostgreSQL, Redis, the fake SendGrid in this process, and real
`digest worker` processes started with the test's environment."""

from __future__ import annotations

import os
import random
import re
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path

import pytest
from typer.testing import CliRunner

from digest.cli import app
from digest.config import load_settings
from digest.store import Store
from tests.fake_sendgrid import FakeSendGrid
from tests.render.sample_issue import sample_issue

REDIS_HOST, REDIS_PORT = "127.0.0.1", 6379
SENDGRID_KEY = "SG.workers-test-key"
NOW = datetime.now(UTC)


@pytest.fixture
def broker_env() -> Iterator[dict[str, str]]:
    """DIGEST_BROKER_* for this test alone: a Redis database and a queue of its own."""
    import redis

    database = random.randint(1, 15)
    client = redis.Redis(REDIS_HOST, REDIS_PORT, db=database, socket_connect_timeout=2)
    try:
        client.ping()
    except redis.exceptions.ConnectionError as error:
        pytest.skip(f"Redis is not reachable at {REDIS_HOST}:{REDIS_PORT}: {error}")
    queue = f"digest-test-{uuid.uuid4().hex[:12]}"
    yield {
        "DIGEST_BROKER_URL": f"redis://{REDIS_HOST}:{REDIS_PORT}/{database}",
        "DIGEST_BROKER_QUEUE": queue,
    }
    client.delete(queue)
    client.close()


def start_worker(log: Path, env: dict[str, str], *, concurrency: int = 1) -> subprocess.Popen:
    """A real `digest worker` in its own session (kill -9 takes its pool with it), writing to
    `log`; returns once it is ready for tasks."""
    with log.open("w") as handle:
        process = subprocess.Popen(
            [sys.executable, "-m", "digest", "worker", f"--concurrency={concurrency}"],
            env=env,
            stdout=handle,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    deadline = time.monotonic() + 60
    while " ready." not in log.read_text(errors="replace"):
        assert process.poll() is None, log.read_text(errors="replace")
        assert time.monotonic() < deadline, log.read_text(errors="replace")
        time.sleep(0.1)
    return process


def stop_worker(process: subprocess.Popen, sig: int = signal.SIGTERM) -> None:
    if process.poll() is None:
        os.killpg(process.pid, sig)
    process.wait(timeout=60)


@dataclass
class Deployment:
    folder: Path
    store: Store
    issue_id: int
    env: dict[str, str]
    fake: FakeSendGrid
    workers: list[subprocess.Popen] = field(default_factory=list)
    logs: list[Path] = field(default_factory=list)

    def start_worker(self, name: str, *, concurrency: int = 1) -> subprocess.Popen:
        log = self.folder / f"worker-{name}.log"
        process = start_worker(log, self.env, concurrency=concurrency)
        self.workers.append(process)
        self.logs.append(log)
        return process

    def kill(self, process: subprocess.Popen, sig: int = signal.SIGKILL) -> None:
        stop_worker(process, sig)

    def send(self, *extra: str) -> subprocess.Popen:
        return subprocess.Popen(
            [sys.executable, "-m", "digest", "send", str(self.issue_id), "--workers", "--json"]
            + list(extra),
            env=self.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

    def batch_ranges(self, worker: int) -> set[str]:
        """The row ranges ("A-B") of the batches a worker's log says it ran."""
        return set(re.findall(r" rows=(\d+-\d+)", self.logs[worker].read_text(errors="replace")))

    def batches_taken(self) -> list[int]:
        """How many batches each worker's log says it sent."""
        return [log.read_text(errors="replace").count(" rows=") for log in self.logs]


def make_deployment(
    folder: Path, database_url: str, broker_env: dict[str, str], fake: FakeSendGrid, readers: int
) -> Deployment:
    """A demo folder's settings on PostgreSQL: an issue, and `readers` people on its list."""
    runner = CliRunner()
    assert runner.invoke(app, ["demo", str(folder), "--json"]).exit_code == 0
    env = {
        **os.environ,
        **broker_env,
        "DIGEST_CONFIG": str(folder / "digest.toml"),
        "DIGEST_DATABASE_URL": database_url,
        "DIGEST_MAIL_URL": fake.mail_url,
        "SENDGRID_API_KEY": SENDGRID_KEY,
    }
    settings = load_settings(folder / "digest.toml", env)
    store = Store.open(settings.database_url)
    digest = settings.digest(None)
    issue = replace(sample_issue(10), digest=digest.name, period_key="workers-test")
    store.save_articles([a for section in issue.sections for a in section.articles], now=NOW)
    saved, _created = store.save_issue(issue)
    assert saved.id is not None
    people = folder / "people.csv"
    people.write_text(
        "email\n" + "".join(f"reader{n}@example.org\n" for n in range(readers)), encoding="utf-8"
    )
    imported = subprocess.run(
        [sys.executable, "-m", "digest", "subscribers", "import", str(people)]
        + ["--list", digest.list_name, "--consent", "workers test"],
        env=env,
        capture_output=True,
        text=True,
    )
    assert imported.returncode == 0, imported.stderr
    return Deployment(folder, store, saved.id, env, fake)


@pytest.fixture
def deployment_factory(
    tmp_path: Path, postgres_url: str, broker_env: dict[str, str]
) -> Iterator[object]:
    made: list[Deployment] = []

    def make(readers: int, **fake_options: float) -> Deployment:
        fake = FakeSendGrid(SENDGRID_KEY, **fake_options).start()  # type: ignore[arg-type]
        deployment = make_deployment(tmp_path / "site", postgres_url, broker_env, fake, readers)
        made.append(deployment)
        return deployment

    yield make
    for deployment in made:
        for process in deployment.workers:
            deployment.kill(process, signal.SIGTERM)
        deployment.fake.stop()
        deployment.store.engine.dispose()
