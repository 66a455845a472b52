"""The scheduler of `digest serve`: which jobs exist and when they fire (APScheduler wiring).

Jobs are kept in the project database (SQLAlchemyJobStore, table `scheduler_jobs`) and derived
from digest.toml at every start: one fetch job per source (every `every` minutes), one job per
digest (its crontab `schedule` in its `timezone`) and one `due` job that sends approved issues
whose time has come. What a job does is decided in digest.pipeline and digest.slots; the jobs
here only open the settings and the store and call them.

The store pickles jobs, so job functions are module-level and take only strings (the config
path and a name); each opens what it needs itself.
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from apscheduler.jobstores.sqlalchemy import SQLAlchemyJobStore
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.schedulers.base import BaseScheduler
from apscheduler.triggers.base import BaseTrigger
from apscheduler.triggers.interval import IntervalTrigger

from digest.config import Settings, load_settings
from digest.errors import DigestError
from digest.slots import schedule_trigger
from digest.store import Store

log = logging.getLogger(__name__)

JOB_TABLE = "scheduler_jobs"
DUE_JOB_ID = "due"
# Each job's runs never overlap: a slow fetch makes the next one wait (or coalesce), not pile up.
MAX_INSTANCES = 1


def utc_now() -> datetime:
    return datetime.now(UTC)


# --- the jobs (run in the scheduler's worker threads) --------------------------------------

_stores: dict[str, Store] = {}
_stores_lock = threading.Lock()


def _open(config_path: str) -> tuple[Settings, Store]:
    """The settings as they are now, and one Store (engine) per database for the process."""
    settings = load_settings(Path(config_path), os.environ)
    with _stores_lock:
        store = _stores.get(settings.database_url)
        if store is None:
            store = _stores[settings.database_url] = Store.open(settings.database_url)
    return settings, store


def close_stores() -> None:
    """Dispose of the jobs' database engines (when the scheduler stops)."""
    with _stores_lock:
        for store in _stores.values():
            store.engine.dispose()
        _stores.clear()


def fetch_job(config_path: str, source_name: str) -> None:
    """Fetch one source and store its new articles."""
    from digest.collect import fetch_sources

    try:
        settings, store = _open(config_path)
        report = asyncio.run(fetch_sources(settings, store, clock=utc_now, only=source_name))
    except DigestError as error:
        log.error("job fetch:%s: %s", source_name, error)
        return
    for outcome in report.sources:
        if outcome.error:
            log.warning("source=%s fetch failed: %s", outcome.name, outcome.error)
    log.info("source=%s found=%d stored=%d", source_name, report.found, report.stored)


def digest_job(config_path: str, digest_name: str) -> None:
    """At a digest's slot: build its issue, then send it, schedule it, or tell the editors."""
    from digest.deliver.backends import backend_from_url
    from digest.runs import describe_run, digest_slot, run_digest_slot

    try:
        settings, store = _open(config_path)
        digest = settings.digest(digest_name)
        # The slot the scheduler fired for (or, fired late after an outage, the one it missed).
        slot = digest_slot(digest, utc_now())
        if slot is None:
            log.error("job digest:%s: its schedule has no slot in 5 years", digest_name)
            return
        run = asyncio.run(
            run_digest_slot(
                settings,
                store,
                backend_from_url(settings.mail_url),
                digest,
                slot=slot,
                clock=utc_now,
            )
        )
    except DigestError as error:
        log.error("job digest:%s: %s", digest_name, error)
        return
    log.info("slot %s: %s", f"{slot:%Y-%m-%d %H:%M} UTC", describe_run(run))


def due_job(config_path: str) -> None:
    """Send approved issues whose send time has come, inside their window and not too late."""
    from digest.deliver.backends import backend_from_url
    from digest.runs import describe_run, send_due

    try:
        settings, store = _open(config_path)
        runs = asyncio.run(
            send_due(settings, store, backend_from_url(settings.mail_url), clock=utc_now)
        )
    except DigestError as error:
        log.error("job due: %s", error)
        return
    for run in runs:
        log.info("due: %s", describe_run(run))


# --- which jobs the configuration asks for -------------------------------------------------


@dataclass(frozen=True, slots=True)
class JobSpec:
    id: str
    func: Callable[..., None]
    args: tuple[str, ...]
    trigger: BaseTrigger
    keep_next_run: bool  # a digest job keeps the run it missed while down, however long ago
    run_at_start: bool = False  # a fetch runs when the scheduler starts, then every N minutes


def job_specs(settings: Settings) -> list[JobSpec]:
    """Every job digest.toml asks for, each with an explicit id."""
    config = str(settings.path)
    due_every = settings.file.scheduler.due_every
    specs = [
        JobSpec(
            id=f"fetch:{source.name}",
            func=fetch_job,
            args=(config, source.name),
            trigger=IntervalTrigger(minutes=source.every, timezone=UTC),
            keep_next_run=False,
            run_at_start=True,
        )
        for source in settings.sources
    ]
    specs += [
        JobSpec(
            id=f"digest:{digest.name}",
            func=digest_job,
            args=(config, digest.name),
            trigger=schedule_trigger(digest.schedule, digest.zone),
            keep_next_run=True,
        )
        for digest in settings.digests
    ]
    specs.append(
        JobSpec(
            id=DUE_JOB_ID,
            func=due_job,
            args=(config,),
            trigger=IntervalTrigger(minutes=due_every, timezone=UTC),
            keep_next_run=False,
        )
    )
    return specs


def sync_jobs(scheduler: BaseScheduler, settings: Settings) -> list[str]:
    """Make the stored jobs what the configuration asks for; the ids of the jobs after.

    Jobs no longer configured are removed. An unchanged digest job is kept as stored, so a
    slot missed while the scheduler was down still runs on start, however long ago (its
    late_after cut-off decides whether it is sent or held for an editor); any other job is
    replaced, and a fetch or due run missed by more than `misfire_grace` is skipped.
    """
    fetch_grace = settings.file.scheduler.misfire_grace * 60
    specs = job_specs(settings)
    wanted = {spec.id for spec in specs}
    stored = {job.id: job for job in scheduler.get_jobs()}
    for job_id in stored.keys() - wanted:
        scheduler.remove_job(job_id)
        log.info("job %s removed: no longer in %s", job_id, settings.path)
    for spec in specs:
        # A digest run missed by any time still runs (once: coalesced), and its slot decides:
        # sent, or held for an editor who is told. An outage never ends in silence.
        grace = None if spec.keep_next_run else fetch_grace
        old = stored.get(spec.id)
        unchanged = (
            old is not None
            and old.func is spec.func
            and tuple(old.args) == spec.args
            and repr(old.trigger) == repr(spec.trigger)
        )
        if spec.keep_next_run and unchanged:
            scheduler.modify_job(spec.id, misfire_grace_time=grace, coalesce=True)
            continue
        first_run = {"next_run_time": utc_now()} if spec.run_at_start else {}
        scheduler.add_job(
            spec.func,
            trigger=spec.trigger,
            args=spec.args,
            id=spec.id,
            name=spec.id,
            replace_existing=True,
            misfire_grace_time=grace,
            coalesce=True,
            max_instances=MAX_INSTANCES,
            **first_run,
        )
    return sorted(job.id for job in scheduler.get_jobs())


def create_scheduler(store: Store) -> BackgroundScheduler:
    """A scheduler whose jobs live in the project database, in its own table."""
    return BackgroundScheduler(
        jobstores={"default": SQLAlchemyJobStore(engine=store.engine, tablename=JOB_TABLE)},
        timezone=UTC,
    )


def start_scheduler(settings: Settings, store: Store) -> BackgroundScheduler:
    """Start the scheduler with the configuration's jobs; the caller shuts it down."""
    scheduler = create_scheduler(store)
    # Started paused: the stored jobs become visible, so stale ones can be removed before
    # anything runs.
    scheduler.start(paused=True)
    try:
        jobs = sync_jobs(scheduler, settings)
    except BaseException:
        scheduler.shutdown(wait=False)
        raise
    scheduler.resume()
    log.info("scheduler started with %d jobs: %s", len(jobs), ", ".join(jobs))
    return scheduler


def stop_scheduler(scheduler: BaseScheduler) -> None:
    """Stop after the running jobs finish (a send is resumable, but better finished)."""
    scheduler.shutdown(wait=True)
    close_stores()
