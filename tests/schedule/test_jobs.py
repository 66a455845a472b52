"""Which jobs `digest serve` schedules, kept in the project database (digest/schedule.py)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from apscheduler.jobstores.sqlalchemy import SQLAlchemyJobStore
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.interval import IntervalTrigger

from digest.config import Settings
from digest.schedule import (
    DUE_JOB_ID,
    JOB_TABLE,
    create_scheduler,
    digest_job,
    due_job,
    fetch_job,
    job_specs,
    start_scheduler,
    stop_scheduler,
    sync_jobs,
)
from digest.store import Store
from tests.schedule.conftest import READERS, SECRET, MakeProject, Project, stories

MONDAY_CONFIG = {"schedule": "0 8 * * 1"}


@pytest.fixture
def project(make_project: MakeProject, database_url: str) -> Project:
    return make_project(database_url, **MONDAY_CONFIG)


@pytest.fixture
def store(project: Project) -> Iterator[Store]:
    opened = Store.open(project.database_url)
    yield opened
    opened.engine.dispose()


def with_config(project: Project, old: str, new: str) -> Settings:
    text = project.config.read_text(encoding="utf-8")
    assert old in text
    project.config.write_text(text.replace(old, new), encoding="utf-8")
    return project.settings()


def synced(store: Store, settings: Settings) -> dict[str, object]:
    """Start a scheduler (paused, so nothing runs) on the store, sync, and read its jobs."""
    scheduler = create_scheduler(store)
    scheduler.start(paused=True)
    try:
        sync_jobs(scheduler, settings)
        return {
            job.id: (job.trigger, job.next_run_time, job.args, job.misfire_grace_time, job.coalesce)
            for job in scheduler.get_jobs()
        }
    finally:
        scheduler.shutdown(wait=False)


def set_next_run(store: Store, job_id: str, when: datetime) -> None:
    """What a scheduler that was down when the job was due leaves in the job table."""
    jobstore = SQLAlchemyJobStore(engine=store.engine, tablename=JOB_TABLE)
    jobstore.start(create_scheduler(store), "default")
    job = jobstore.lookup_job(job_id)
    assert job is not None
    job._modify(next_run_time=when)
    jobstore.update_job(job)


def test_the_configuration_becomes_one_job_per_source_and_digest_and_a_due_check(
    project: Project,
) -> None:
    settings = project.settings()
    specs = {spec.id: spec for spec in job_specs(settings)}
    assert set(specs) == {"fetch:courier", "digest:weekly", DUE_JOB_ID}
    fetch = specs["fetch:courier"]
    assert fetch.func is fetch_job and fetch.args == (str(settings.path), "courier")
    assert isinstance(fetch.trigger, IntervalTrigger)
    assert fetch.trigger.interval == timedelta(minutes=30)
    weekly = specs["digest:weekly"]
    assert weekly.func is digest_job and weekly.args == (str(settings.path), "weekly")
    assert isinstance(weekly.trigger, CronTrigger)
    assert str(weekly.trigger.timezone) == "Europe/Berlin"
    assert specs[DUE_JOB_ID].func is due_job
    assert specs[DUE_JOB_ID].trigger.interval == timedelta(minutes=1)  # type: ignore[attr-defined]


def test_the_stored_digest_job_fires_on_monday_at_8_berlin_time(
    project: Project, store: Store
) -> None:
    jobs = synced(store, project.settings())
    trigger, next_run, _args, grace, coalesce = jobs["digest:weekly"]  # type: ignore[misc]
    local = next_run.astimezone(trigger.timezone)
    assert (local.strftime("%A"), local.hour, local.minute) == ("Monday", 8, 0)
    # A run missed during a restart still runs, however late, once (misfires coalesce).
    assert (grace, coalesce) == (None, True)


def test_a_restart_keeps_a_missed_digest_run_and_a_changed_schedule_replaces_it(
    project: Project, store: Store
) -> None:
    missed = datetime.now(UTC) - timedelta(minutes=20)
    synced(store, project.settings())
    set_next_run(store, "digest:weekly", missed)
    # Restart with the same configuration: the run missed while down is still there to run.
    jobs = synced(store, project.settings())
    assert jobs["digest:weekly"][1] == missed  # type: ignore[index]
    # Restart with a new schedule: the job is replaced and fires at the new time.
    settings = with_config(project, 'schedule = "0 8 * * 1"', 'schedule = "30 6 * * 5"')
    jobs = synced(store, settings)
    trigger, next_run = jobs["digest:weekly"][:2]  # type: ignore[index]
    local = next_run.astimezone(trigger.timezone)
    assert (local.strftime("%A"), local.hour, local.minute) == ("Friday", 6, 30)


def test_a_source_removed_from_the_configuration_loses_its_job(
    project: Project, store: Store
) -> None:
    assert "fetch:courier" in synced(store, project.settings())
    settings = with_config(
        project,
        '[[sources]]\nname = "courier"\nurl = "feed.xml"\nkind = "feed"\nevery = 30\n',
        '[[sources]]\nname = "gazette"\nurl = "feed.xml"\nkind = "feed"\nevery = 5\n',
    )
    jobs = synced(store, settings)
    assert set(jobs) == {"fetch:gazette", "digest:weekly", DUE_JOB_ID}
    assert jobs["fetch:gazette"][0].interval == timedelta(minutes=5)  # type: ignore[index,union-attr]
    # A source is fetched when the scheduler starts, then every `every` minutes.
    assert jobs["fetch:gazette"][1] <= datetime.now(UTC)  # type: ignore[index,operator]


def test_misfire_grace_comes_from_the_configuration(project: Project, store: Store) -> None:
    text = project.config.read_text(encoding="utf-8")
    project.config.write_text(
        text.replace("[mail]", "[scheduler]\nmisfire_grace = 15\ndue_every = 2\n[mail]"),
        encoding="utf-8",
    )
    jobs = synced(store, project.settings())
    graces = {job_id: grace for job_id, (*_rest, grace, _coalesce) in jobs.items()}  # type: ignore[misc]
    # A digest job is never skipped as too late: its late_after cut-off decides instead.
    assert graces == {"fetch:courier": 15 * 60, DUE_JOB_ID: 15 * 60, "digest:weekly": None}
    assert all(coalesce for *_rest, coalesce in jobs.values())  # type: ignore[misc]
    assert jobs[DUE_JOB_ID][0].interval == timedelta(minutes=2)  # type: ignore[index,union-attr]


def test_the_job_table_is_the_schedulers_own(project: Project, store: Store) -> None:
    synced(store, project.settings())
    import sqlalchemy as sa

    assert "scheduler_jobs" in sa.inspect(store.engine).get_table_names()


def test_on_start_the_scheduler_runs_a_slot_missed_while_it_was_down_once(
    make_project: MakeProject, sqlite_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Daily, 20 minutes ago: the next regular run is tomorrow, so only the missed one can send.
    now = datetime.now(UTC)
    slot = (now - timedelta(minutes=20)).replace(second=0, microsecond=0)
    daily = f"{slot.minute} {slot.hour} * * *"
    project = make_project(sqlite_url, schedule=daily, timezone="UTC")
    monkeypatch.setenv("DIGEST_SECRET_KEY", SECRET)  # the jobs read the environment
    settings = project.settings()
    store = Store.open(settings.database_url)
    try:
        store.save_articles(stories(now - timedelta(days=1)), now=now - timedelta(hours=1))
        synced(store, settings)
        set_next_run(store, "digest:weekly", slot)
        scheduler = start_scheduler(settings, store)
        try:
            # Polls the outbox the job writes to; the job runs as soon as the scheduler starts.
            deadline = time.monotonic() + 30
            while len(project.mail()) < len(READERS) and time.monotonic() < deadline:
                time.sleep(0.2)
        finally:
            stop_scheduler(scheduler)
        assert sorted(to for to, _subject in project.mail()) == sorted(READERS)
        assert store.latest_issue_id() == 1
    finally:
        store.engine.dispose()


def test_a_slot_missed_by_more_than_the_grace_still_ends_in_an_editor_email(
    make_project: MakeProject, sqlite_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Daily, 90 minutes ago: past the hour of misfire_grace and the hour of late_after.
    now = datetime.now(UTC)
    slot = (now - timedelta(minutes=90)).replace(second=0, microsecond=0)
    project = make_project(
        sqlite_url,
        schedule=f"{slot.minute} {slot.hour} * * *",
        timezone="UTC",
        late_after=1,
        editors=["ed@example.org"],
    )
    monkeypatch.setenv("DIGEST_SECRET_KEY", SECRET)
    settings = project.settings()
    store = Store.open(settings.database_url)
    try:
        store.save_articles(stories(now - timedelta(days=1)), now=now - timedelta(hours=2))
        synced(store, settings)
        set_next_run(store, "digest:weekly", slot)
        scheduler = start_scheduler(settings, store)
        try:
            deadline = time.monotonic() + 30
            while not project.mail() and time.monotonic() < deadline:
                time.sleep(0.2)
        finally:
            stop_scheduler(scheduler)
        assert [to for to, _subject in project.mail()] == ["ed@example.org"]
        issue_id = store.latest_issue_id()
        assert issue_id == 1 and store.issue_status(issue_id) == "draft"
    finally:
        store.engine.dispose()
