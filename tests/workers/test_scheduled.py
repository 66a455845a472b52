"""Scheduled and due sends with `[mail] workers = true`: the slot's issue goes out through a
real `digest worker` process; without a broker it waits, approved, and says why."""

from __future__ import annotations

import os
from datetime import timedelta

import pytest
from typer.testing import CliRunner

from digest.cli import app
from digest.config import Settings
from digest.pipeline import build_issue
from digest.store import Store
from tests.schedule.conftest import READERS, Clock, MakeProject, Project, stories
from tests.schedule.conftest import make_project as make_project  # fixtures
from tests.schedule.conftest import opened as opened
from tests.schedule.test_run import SLOT, each_reader_got, slot_run
from tests.workers.conftest import start_worker, stop_worker


def with_workers(project: Project) -> None:
    config = project.config.read_text(encoding="utf-8")
    project.config.write_text(config.replace("[mail]\n", "[mail]\nworkers = true\n", 1))


def workers_project(
    make_project: MakeProject, url: str, opened: list[Store]
) -> tuple[Project, Settings, Store]:
    project = make_project(url)
    with_workers(project)
    settings = project.settings()
    assert settings.file.mail.workers
    store = Store.open(settings.database_url)
    opened.append(store)
    store.save_articles(stories(SLOT - timedelta(days=1)), now=SLOT - timedelta(hours=20))
    return project, settings, store


@pytest.mark.slow
@pytest.mark.postgres
async def test_a_slot_run_hands_its_send_to_the_workers(
    make_project: MakeProject,
    postgres_url: str,
    broker_env: dict[str, str],
    opened: list[Store],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    project, settings, store = workers_project(make_project, postgres_url, opened)
    for name, value in broker_env.items():
        monkeypatch.setenv(name, value)
    log = project.root / "worker.log"
    env = {
        **os.environ,
        **project.env(),
        "DIGEST_CONFIG": str(project.config),
        "DIGEST_DATABASE_URL": postgres_url,
    }
    worker = start_worker(log, env)
    try:
        run = await slot_run(settings, store, Clock(SLOT + timedelta(seconds=5)))
    finally:
        stop_worker(worker)
    assert run.sent is not None, run.note
    assert (run.sent.sent, run.sent.queued) == (len(READERS), 0)
    assert run.issue is not None and store.issue_status(run.issue.id or 0) == "sent"
    assert each_reader_got(project, 1)
    # The worker, not this process, sent them: its log names the batch.
    assert " rows=" in log.read_text(errors="replace")


async def test_without_a_broker_the_approved_issue_waits_and_says_why(
    make_project: MakeProject,
    sqlite_url: str,
    opened: list[Store],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    project, settings, store = workers_project(make_project, sqlite_url, opened)
    monkeypatch.delenv("DIGEST_BROKER_URL", raising=False)
    run = await slot_run(settings, store, Clock(SLOT + timedelta(seconds=5)))
    assert run.sent is None
    assert "DIGEST_BROKER_URL is not set" in run.note
    assert run.issue is not None and store.issue_status(run.issue.id or 0) == "approved"
    assert each_reader_got(project, 0)


def test_digest_send_follows_the_setting_and_here_overrides_it(
    make_project: MakeProject, sqlite_url: str, opened: list[Store]
) -> None:
    project, settings, store = workers_project(make_project, sqlite_url, opened)
    issue, _created = build_issue(
        settings.digest("weekly"), store, now=SLOT, sources=settings.sources
    )
    runner = CliRunner()
    config = ["--config", str(project.config)]
    env = {**project.env(), "DIGEST_BROKER_URL": ""}
    by_setting = runner.invoke(app, [*config, "send", str(issue.id)], env=env)
    assert by_setting.exit_code == 1
    assert "DIGEST_BROKER_URL is not set" in by_setting.stderr
    here = runner.invoke(app, [*config, "send", str(issue.id), "--here", "--json"], env=env)
    assert here.exit_code == 0, here.stderr
    assert each_reader_got(project, 1)
