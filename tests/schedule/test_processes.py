"""Two schedulers on one database build one issue and mail each reader once: real processes,
real SQLite / PostgreSQL, the file mail backend (one .eml per message)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa
from typer.testing import CliRunner

from digest.cli import app
from digest.store import Store
from tests.conftest import free_port
from tests.schedule.conftest import READERS, MakeProject, Project, stories

# Every minute, so the latest slot is now and never late whenever the test runs.
EVERY_MINUTE = {"schedule": "* * * * *", "timezone": "Europe/Berlin"}


def start(project: Project, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, *args],
        env={**os.environ, **project.env()},
        cwd=project.root,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def finish(processes: list[subprocess.Popen[str]]) -> list[str]:
    """Each process's stdout, once all have exited 0."""
    finished = []
    for process in processes:
        try:
            finished.append(process.communicate(timeout=120))
        except subprocess.TimeoutExpired:
            process.kill()
            finished.append(process.communicate())
    for process, (_out, err) in zip(processes, finished, strict=True):
        assert process.returncode == 0, err
    return [out for out, _err in finished]


def issue_count(url: str) -> int:
    engine = sa.create_engine(url)
    try:
        with engine.connect() as connection:
            return connection.execute(sa.text("SELECT count(*) FROM issues")).scalar_one()
    finally:
        engine.dispose()


def assert_each_reader_mailed_once(project: Project) -> None:
    assert issue_count(project.database_url) == 1
    mail = project.mail()
    assert sorted(to for to, _subject in mail) == sorted(READERS)


@pytest.mark.slow
def test_three_cron_runs_at_one_slot_send_one_issue_once(
    make_project: MakeProject, database_url: str
) -> None:
    # Hourly, so the three runs (a few seconds apart) share one slot: every minute, a minute
    # boundary between their starts gave the last one the next slot, and nothing new for it.
    project = make_project(
        database_url,
        feed_time=datetime.now(UTC) - timedelta(days=1),
        schedule="0 * * * *",
        timezone="Europe/Berlin",
    )
    to_the_hour = 3600 - (time.time() % 3600)
    if to_the_hour < 30:
        time.sleep(to_the_hour + 1)
    command = ("-m", "digest", "--config", str(project.config), "run", "--json")
    reports = [json.loads(out) for out in finish([start(project, *command) for _ in "abc"])]
    assert_each_reader_mailed_once(project)
    # One process built the issue; the others found it built, whatever they then sent.
    assert sorted(report["digests"][0]["created"] for report in reports) == [False, False, True]
    assert {report["digests"][0]["issue_id"] for report in reports} == {1}


@pytest.mark.slow
def test_two_digest_serve_schedulers_on_one_database_send_one_issue_once(
    make_project: MakeProject, database_url: str
) -> None:
    # Every minute: the next slot is under a minute away whenever the test starts.
    project = make_project(database_url, **EVERY_MINUTE)
    store = Store.open(database_url)
    try:  # what the fetches stored earlier (the feed itself is missing: its fetch just fails)
        store.save_articles(stories(datetime.now(UTC) - timedelta(days=1)), now=datetime.now(UTC))
    finally:
        store.engine.dispose()
    servers: list[subprocess.Popen[str]] = []
    try:
        for _ in "ab":  # the second one started by mistake, beside the first
            port = free_port()
            servers.append(serve(project, port))
            wait_for_web(servers[-1], port)
        deadline = time.monotonic() + 85
        while len(project.mail()) < len(READERS) and time.monotonic() < deadline:
            time.sleep(0.5)
        time.sleep(2)  # a duplicate send, if there were one, would land now
    finally:
        logs = [stop(server) for server in servers]
    assert_each_reader_mailed_once(project)
    assert all("scheduler started with 3 jobs" in " ".join(log.split()) for log in logs)


def test_digest_run_long_after_the_slot_holds_the_issue_and_says_why(
    make_project: MakeProject, sqlite_url: str
) -> None:
    now = datetime.now(UTC)
    slot = now - timedelta(hours=13)  # daily at this time: the latest slot is 13 hours old
    project = make_project(
        sqlite_url,
        feed_time=now - timedelta(days=1),
        schedule=f"{slot.minute} {slot.hour} * * *",
        timezone="UTC",
        editors=["ed@example.org"],
    )
    result = CliRunner().invoke(app, ["--config", str(project.config), "run"], env=project.env())
    assert result.exit_code == 0, result.output
    assert f"weekly: issue 1: late: its slot {slot:%Y-%m-%d %H:%M} UTC was 13.0 h ago" in " ".join(
        result.stderr.split()
    )
    assert [to for to, _subject in project.mail()] == ["ed@example.org"]
    # The editor (or the operator) sends it: `digest send` counts as approval.
    sent = CliRunner().invoke(
        app, ["--config", str(project.config), "send", "1"], env=project.env()
    )
    assert sent.exit_code == 0, sent.output
    assert sorted(to for to, _subject in project.mail()) == sorted([*READERS, "ed@example.org"])


def serve(project: Project, port: int, *flags: str) -> subprocess.Popen[str]:
    return start(
        project,
        "-m",
        "digest",
        "-v",
        "--config",
        str(project.config),
        "serve",
        "--port",
        str(port),
        *flags,
    )


def wait_for_web(process: subprocess.Popen[str], port: int) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and process.poll() is None:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/archive", timeout=2):
                return
        except OSError:
            time.sleep(0.2)


def stop(process: subprocess.Popen[str]) -> str:
    """Stop `digest serve` (Ctrl-C), checking it exits cleanly; its log."""
    try:
        if process.poll() is None:
            process.send_signal(signal.SIGINT)
        _out, err = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    assert process.returncode == 0, err
    return err


def serve_and_stop(project: Project, *flags: str) -> str:
    """Run `digest serve` until its web app answers, then stop it (Ctrl-C); its log."""
    port = free_port()
    process = serve(project, port, *flags)
    try:
        wait_for_web(process, port)
    finally:
        err = stop(process)
    return err


@pytest.mark.slow
def test_serve_runs_the_scheduler_and_no_scheduler_leaves_it_to_another_process(
    make_project: MakeProject, database_url: str
) -> None:
    project = make_project(database_url)
    log = " ".join(serve_and_stop(project, "--no-scheduler").split())
    assert "scheduler started" not in log
    engine = sa.create_engine(database_url)
    try:
        assert "scheduler_jobs" not in sa.inspect(engine).get_table_names()
        log = " ".join(serve_and_stop(project).split())
        assert "scheduler started with 3 jobs: digest:weekly, due, fetch:courier" in log
        with engine.connect() as connection:
            jobs = connection.execute(sa.text("SELECT id FROM scheduler_jobs")).scalars().all()
        assert sorted(jobs) == ["digest:weekly", "due", "fetch:courier"]
    finally:
        engine.dispose()
