"""`digest send --workers` with real `digest worker` processes, Redis and PostgreSQL: the
workers share a send without overlap, and killing one mid-batch loses nobody and doubles
nobody."""

from __future__ import annotations

import json
import os
import re
import signal
import time
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import pytest
import sqlalchemy as sa
from typer.testing import CliRunner

from digest.cli import app
from digest.config import load_settings
from digest.deliver.workers import broker_from_env
from digest.errors import ConfigError
from digest.store import Store
from digest.tables import outbox
from digest.web.webhooks import EventWebhook, parse_events, receive_events
from tests.workers.conftest import Deployment

pytestmark = [
    pytest.mark.postgres,
    # These always run on PostgreSQL: CI's second pass (the suite on PostgreSQL) adds nothing.
    pytest.mark.skipif(
        os.environ.get("DIGEST_TEST_DATABASE", "").strip().lower() == "postgres",
        reason="runs on PostgreSQL in the first pass already",
    ),
]

Factory = Callable[..., Deployment]


def states(store: Store, issue_id: int) -> dict[str, str]:
    with store.engine.connect() as connection:
        rows = connection.execute(
            sa.select(outbox.c.email, outbox.c.state).where(outbox.c.issue_id == issue_id)
        )
        return {email: state for email, state in rows}


@pytest.mark.slow
def test_two_workers_share_a_send_and_reach_every_reader_once(
    deployment_factory: Factory,
) -> None:
    readers = 4000  # four batches of SendGrid's 1000
    site = deployment_factory(readers)
    site.start_worker("a")
    site.start_worker("b")

    sender = site.send()
    out, errors = sender.communicate(timeout=300)

    assert sender.returncode == 0, errors
    report = json.loads(out)
    assert (report["sent"], report["queued"], report["unknown"]) == (readers, 0, 0)
    stats = site.fake.stats()
    assert (stats["distinct"], stats["duplicates"]) == (readers, 0)
    assert set(states(site.store, site.issue_id).values()) == {"sent"}
    assert site.store.issue_status(site.issue_id) == "sent"
    taken = site.batches_taken()
    assert sum(taken) == 4 and all(taken), taken

    again = site.send()  # nothing owed: no batch, the same report
    out, errors = again.communicate(timeout=300)
    assert again.returncode == 0, errors
    assert json.loads(out) == report
    assert site.fake.stats()["recipients"] == readers


@pytest.mark.slow
def test_a_worker_killed_mid_batch_loses_nobody_and_doubles_nobody(
    deployment_factory: Factory, broker_env: dict[str, str]
) -> None:
    readers = 3000
    # Every request is held 2 s, so a kill finds the victim with a request in flight; the
    # fake takes it all the same (the connection drops after it read the body).
    site = deployment_factory(readers, slow_seconds=2.0)
    site.fake.fail_randomly(1.0, ["slow"])
    site.env["DIGEST_BROKER_VISIBILITY_TIMEOUT"] = "5"  # the dead worker's batch comes back soon
    victim = site.start_worker("victim")
    site.start_worker("survivor")

    sender = site.send()
    deadline = time.monotonic() + 120
    while "sending" not in states(site.store, site.issue_id).values():
        assert time.monotonic() < deadline and sender.poll() is None
        time.sleep(0.05)
    time.sleep(0.5)  # both workers are posting their first batch
    site.kill(victim)
    _out, errors = sender.communicate(timeout=300)

    stats = site.fake.stats()
    held = {email for email, state in states(site.store, site.issue_id).items() if state != "sent"}
    print(f"\n{len(held)} held as unknown; batches per worker: {site.batches_taken()}")
    assert stats["duplicates"] == 0, errors
    assert held, "the kill left nobody unanswered: the test proved nothing"
    # The victim died inside its batch; the broker gave that batch to the survivor, which
    # ran every one of the three (the victim's finding its rows claimed: batch=0).
    assert site.batch_ranges(0) == set()
    assert len(site.batch_ranges(1)) == 3, site.logs[1].read_text()

    # SendGrid's events settle what it took; `--retry-unknown` sends to whoever is left.
    webhook = EventWebhook(public_key=None, store=site.store, lists_by_digest={})  # type: ignore[arg-type]
    now = datetime.now(UTC)
    receive_events(webhook, parse_events(json.dumps(site.fake.events()).encode(), now=now))
    site.fake.fail_randomly(0.0, [])
    retried = site.send("--retry-unknown")
    _out, errors = retried.communicate(timeout=300)

    assert retried.returncode == 0, errors
    stats = site.fake.stats()
    assert (stats["distinct"], stats["duplicates"]) == (readers, 0), errors
    assert set(states(site.store, site.issue_id).values()) == {"sent"}


def test_the_broker_settings_are_checked() -> None:
    with pytest.raises(ConfigError, match="DIGEST_BROKER_URL is not set"):
        broker_from_env({})
    with pytest.raises(ConfigError, match="DIGEST_BROKER_VISIBILITY_TIMEOUT='soon'"):
        broker_from_env(
            {"DIGEST_BROKER_URL": "redis://x", "DIGEST_BROKER_VISIBILITY_TIMEOUT": "soon"}
        )


def test_digest_send_workers_without_a_broker_is_one_line(tmp_path: Path) -> None:
    runner = CliRunner()
    folder = tmp_path / "site"
    assert runner.invoke(app, ["demo", str(folder), "--json"]).exit_code == 0
    environment = {"DIGEST_BROKER_URL": ""}
    config = ["--config", str(folder / "digest.toml")]
    result = runner.invoke(app, [*config, "send", "1", "--workers"], env=environment)
    assert result.exit_code == 1
    assert "DIGEST_BROKER_URL is not set" in result.stderr


def test_a_rate_limited_digest_is_not_fanned_out(tmp_path: Path) -> None:
    """Workers keep no shared token bucket, so a capped rate would be multiplied."""
    runner = CliRunner()
    folder = tmp_path / "site"
    assert runner.invoke(app, ["demo", str(folder), "--json"]).exit_code == 0
    config = folder / "digest.toml"
    config.write_text(
        config.read_text(encoding="utf-8").replace("[mail]\n", "[mail]\nrate = 10\n", 1),
        encoding="utf-8",
    )
    environment = {"DIGEST_BROKER_URL": "redis://127.0.0.1:1/0"}  # never reached
    result = runner.invoke(
        app, ["--config", str(config), "send", "1", "--workers"], env=environment
    )
    assert result.exit_code == 1
    assert "[mail] rate and domain_rate are kept by one sending process" in result.stderr


@pytest.mark.slow
def test_a_send_whose_every_message_fails_pauses_and_resumes(deployment_factory: Factory) -> None:
    """`pause_after` (50) failures with nothing sent meanwhile: the batches not started yet
    are dropped and their readers stay queued; sending again goes on."""
    readers = 12_000
    site = deployment_factory(readers)
    config = site.folder / "digest.toml"
    good = config.read_text(encoding="utf-8")
    # SendGrid refuses a sender without a real domain, for every message (a 400: failed).
    bad = re.sub(r"(?m)^sender = .*$", 'sender = "Digest <digest@localhost>"', good, count=1)
    assert bad != good
    config.write_text(bad, encoding="utf-8")
    site.start_worker("a")

    sender = site.send()
    out, errors = sender.communicate(timeout=300)

    assert sender.returncode == 1, errors
    report = json.loads(out)
    assert report["paused"].startswith(report["paused"].split(" ")[0] + " messages failed")
    assert "from email" in report["paused"], report
    assert report["failed"] >= 50 and report["queued"] > 0, report
    assert "sending paused" in errors

    config.write_text(good, encoding="utf-8")  # the cause fixed; workers read it on start
    site.kill(site.workers[0], signal.SIGTERM)
    site.start_worker("b")
    resumed = site.send()
    out, errors = resumed.communicate(timeout=300)

    assert resumed.returncode == 0, errors
    after = json.loads(out)
    assert (after["sent"], after["failed"], after["queued"]) == (
        report["queued"],
        report["failed"],
        0,
    )


def test_a_broker_that_is_down_is_one_line_and_sends_nobody(tmp_path: Path) -> None:
    runner = CliRunner()
    folder = tmp_path / "site"
    assert runner.invoke(app, ["demo", str(folder), "--json"]).exit_code == 0
    config = folder / "digest.toml"
    store = Store.open(load_settings(config, {}).database_url)
    sent = store.load_issue(1)
    assert sent is not None
    issue, _created = store.save_issue(replace(sent, id=None, period_key="broker-down"))
    environment = {"DIGEST_BROKER_URL": "redis://:hunter2@127.0.0.1:1/0"}  # nobody listens

    result = runner.invoke(
        app, ["--config", str(config), "send", str(issue.id), "--workers"], env=environment
    )

    assert result.exit_code == 1, result.output
    assert "broker redis://:***@127.0.0.1:1/0:" in result.stderr
    assert "hunter2" not in result.stderr
    assert store.issue_status(issue.id or 0) == "draft"  # untouched: nothing queued
    assert not store.has_outbox_rows(issue.id or 0)


def test_a_worker_on_another_database_refuses_the_batches(
    deployment_factory: Factory, tmp_path: Path
) -> None:
    site = deployment_factory(10)
    right = site.env["DIGEST_DATABASE_URL"]
    site.env["DIGEST_DATABASE_URL"] = f"sqlite:///{tmp_path / 'elsewhere.db'}"
    site.start_worker("lost")
    site.env["DIGEST_DATABASE_URL"] = right

    sender = site.send()
    out, errors = sender.communicate(timeout=120)

    assert sender.returncode == 1
    assert json.loads(out)["queued"] == 10
    assert "this worker's database is not the sender's" in errors
    assert site.fake.stats()["recipients"] == 0
