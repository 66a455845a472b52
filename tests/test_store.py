"""The store on real SQLite and PostgreSQL: migrations, articles, issues and the outbox rows."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
import sqlalchemy as sa

import digest.migrations
from digest.errors import ConfigError
from digest.models import Article, Issue, Section, SendResult
from digest.store import QueuedRecipient, Store
from digest.tables import outbox

NOW = datetime(2025, 3, 3, 8, 0, tzinfo=UTC)
BERLIN_WINTER = timezone(timedelta(hours=1))


def article(n: int, published: datetime | None = NOW, **changes: str) -> Article:
    values = {
        "id": f"id{n}",
        "url": f"https://news.example.org/{n}?utm_source=feed",
        "canonical_url": f"https://news.example.org/{n}",
        "title": f"Story {n}",
        "text": f"Body of story {n}.",
        "source": "example",
        **changes,
    }
    return Article(published=published, categories=("city", "rain"), **values)  # type: ignore[arg-type]


def draft(*sections: Section, period_key: str = "2025-W10", title: str = "Week 10") -> Issue:
    return Issue(
        digest="weekly",
        period_key=period_key,
        title=title,
        created=NOW,
        sections=sections,
        intro="Hello",
    )


def stored_issue(store: Store) -> int:
    """An issue to hang outbox rows on (the outbox has a foreign key to issues)."""
    store.save_articles([article(1)], now=NOW)
    issue, _created = store.save_issue(draft(Section("News", (article(1),))))
    assert issue.id is not None
    return issue.id


def recipients(count: int) -> list[QueuedRecipient]:
    return [QueuedRecipient(n, f"reader{n}@example.com", ("city",)) for n in range(1, count + 1)]


def outbox_rows(store: Store, issue_id: int) -> list[sa.Row]:
    with store.engine.connect() as connection:
        return connection.execute(
            sa.select(outbox).where(outbox.c.issue_id == issue_id).order_by(outbox.c.id)
        ).all()


# --- opening -----------------------------------------------------------------------------


def test_open_migrates_a_new_database(store: Store) -> None:
    inspector = sa.inspect(store.engine)
    tables = set(inspector.get_table_names())
    assert {
        "articles",
        "issues",
        "issue_items",
        "outbox",
        "sources",
        "source_paragraphs",
        "subscribers",
    } <= tables
    with store.engine.connect() as connection:
        versions = connection.exec_driver_sql("SELECT version_num FROM alembic_version").all()
    assert [row[0] for row in versions] == [newest_revision()]


def newest_revision() -> str:
    """The head of digest/migrations/versions, read from the scripts themselves."""
    folder = Path(digest.migrations.__file__).parent / "versions"
    revisions = {path.name.split("_")[0] for path in folder.glob("[0-9]*_*.py")}
    return max(revisions)


def test_opening_twice_keeps_schema_and_data(database_url: str) -> None:
    first = Store.open(database_url)
    first.save_articles([article(1)], now=NOW)
    first.engine.dispose()

    again = Store.open(database_url)
    try:
        assert list(again.articles_by_id(["id1"])) == ["id1"]
        with again.engine.connect() as connection:
            versions = connection.exec_driver_sql("SELECT version_num FROM alembic_version").all()
        assert [row[0] for row in versions] == [newest_revision()]
    finally:
        again.engine.dispose()


@pytest.mark.sqlite("SQLite's own pragmas")
def test_sqlite_database_uses_write_ahead_logging(sqlite_url: str) -> None:
    store = Store.open(sqlite_url)
    try:
        with store.engine.connect() as connection:
            mode = connection.exec_driver_sql("PRAGMA journal_mode").scalar()
            foreign_keys = connection.exec_driver_sql("PRAGMA foreign_keys").scalar()
        assert (mode, foreign_keys) == ("wal", 1)
    finally:
        store.engine.dispose()


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("nosuch://somewhere/db", "nosuch"),
        ("postgresql+nodriver://digest:s3cret@db.example.org/x", "digest:***@"),
        # Nothing listens on port 1: psycopg explains over two lines; we say one.
        ("postgresql+psycopg://digest:s3cret@127.0.0.1:1/x", "Connection refused"),
        pytest.param(
            "sqlite:////no/such/folder/digest.db",
            "unable to open database file",
            marks=pytest.mark.sqlite("a SQLite file path"),
        ),
    ],
)
def test_open_reports_a_bad_database_in_one_line_without_the_password(
    url: str, expected: str
) -> None:
    with pytest.raises(ConfigError) as raised:
        Store.open(url)
    message = str(raised.value)
    assert expected in message
    assert "s3cret" not in message
    assert "\n" not in message


# --- articles ----------------------------------------------------------------------------


def test_save_articles_skips_ids_and_canonical_urls_already_stored(store: Store) -> None:
    assert store.save_articles([article(1), article(2)], now=NOW) == 2

    same_id = article(1, canonical_url="https://elsewhere.example.org/1")
    same_url = article(3, canonical_url="https://news.example.org/2")
    twice_in_batch = [article(4), article(4, title="Story 4, updated")]
    assert store.save_articles([same_id, same_url, *twice_in_batch], now=NOW) == 1

    stored = store.articles_by_id(["id1", "id2", "id3", "id4"])
    assert sorted(stored) == ["id1", "id2", "id4"]
    assert stored["id1"].canonical_url == "https://news.example.org/1"
    assert stored["id4"].title == "Story 4"


def test_unseen_articles_looks_up_only_the_batch_and_drops_repeats(store: Store) -> None:
    store.save_articles([article(1), article(2)], now=NOW)
    fresh = [article(n) for n in range(3, 1203)]  # more than one lookup chunk
    batch = [article(1), article(9, canonical_url="https://news.example.org/2"), *fresh, fresh[0]]
    assert [a.id for a in store.unseen_articles(batch)] == [a.id for a in fresh]
    assert store.save_articles(batch, now=NOW) == len(fresh)
    assert store.unseen_articles(batch) == []


def test_count_paragraphs_reports_what_recurs_across_fetches(store: Store) -> None:
    appeal, plug = "a" * 16, "b" * 16
    first = store.count_paragraphs(
        "blog", [frozenset({appeal, "p1"}), frozenset({appeal, plug})], now=NOW, recurring_at=3
    )
    assert first == frozenset()
    later = NOW + timedelta(days=1)
    second = store.count_paragraphs(
        "blog", [frozenset({appeal, plug, "p2"})], now=later, recurring_at=3
    )
    assert second == {appeal}
    # Counts are per source: another source carrying the same paragraph starts from zero.
    assert store.count_paragraphs("other", [frozenset({appeal})], now=later, recurring_at=1) == {
        appeal
    }
    # Only the batch's own fingerprints come back, once they recur.
    third = store.count_paragraphs("blog", [frozenset({plug})], now=later, recurring_at=3)
    assert third == {plug}


def test_count_paragraphs_forgets_rare_paragraphs_after_a_while(store: Store) -> None:
    store.count_paragraphs(
        "blog", [frozenset({"old"}), frozenset({"old"})], now=NOW, recurring_at=3
    )
    much_later = NOW + timedelta(days=400)
    store.count_paragraphs("blog", [frozenset({"new"})], now=much_later, recurring_at=3)
    # "old" was forgotten, so one more sighting does not make it recurring.
    assert store.count_paragraphs("blog", [frozenset({"old"})], now=much_later, recurring_at=3) == (
        frozenset()
    )


def test_save_articles_without_canonical_url_keys_on_the_url(store: Store) -> None:
    bare = article(5, canonical_url="", url="https://news.example.org/5")
    assert store.save_articles([bare], now=NOW) == 1
    assert store.articles_by_id(["id5"])["id5"].canonical_url == "https://news.example.org/5"
    # Another id with the same address is the same story.
    assert (
        store.save_articles([article(6, canonical_url="https://news.example.org/5")], now=NOW) == 0
    )


def test_articles_between_includes_the_start_and_excludes_the_end(store: Store) -> None:
    start, end = NOW - timedelta(days=7), NOW
    store.save_articles(
        [
            article(1, start - timedelta(seconds=1)),
            article(2, start),
            article(3, start + timedelta(days=3)),
            article(4, end - timedelta(seconds=1)),
            article(5, end),
            article(6, None),
        ],
        now=NOW,
    )
    found = store.articles_between(start, end)
    assert [a.id for a in found] == ["id4", "id3", "id2"]  # newest first


def test_articles_between_compares_instants_not_wall_clocks(store: Store) -> None:
    # 08:30 in UTC+1 is 07:30 UTC: inside [07:00, 08:00) UTC although its wall clock is not.
    store.save_articles([article(1, datetime(2025, 3, 3, 8, 30, tzinfo=BERLIN_WINTER))], now=NOW)
    assert [a.id for a in store.articles_between(NOW - timedelta(hours=1), NOW)] == ["id1"]


def test_datetimes_come_back_timezone_aware_in_utc(store: Store) -> None:
    published = datetime(2025, 3, 1, 9, 15, tzinfo=BERLIN_WINTER)
    store.save_articles([article(1, published)], now=NOW)
    store.record_source_success("example", "https://news.example.org/feed", now=published)

    back = store.articles_by_id(["id1"])["id1"].published
    assert back == published
    assert back is not None and back.utcoffset() == timedelta(0)
    assert back.hour == 8  # the UTC wall clock, not the original zone's

    health = store.source_health()[0]
    assert health.last_success == published
    assert health.last_success is not None and health.last_success.utcoffset() == timedelta(0)


def test_a_naive_datetime_never_reaches_the_database(store: Store) -> None:
    with pytest.raises(sa.exc.StatementError, match="naive datetime"):
        store.save_articles([article(1, datetime(2025, 3, 1, 9, 15))], now=NOW)


def test_articles_round_trip_unchanged(store: Store) -> None:
    original = article(1, html="<p>Ünïcödé ✓ 東京</p>", author="Zoë", language="de")
    store.save_articles([original], now=NOW)
    assert store.articles_by_id(["id1"]) == {"id1": original}


# --- sources -----------------------------------------------------------------------------


def test_source_failures_count_up_and_a_success_resets_them(store: Store) -> None:
    feed = "https://news.example.org/feed"
    store.record_source_failure("example", feed, "timed out", now=NOW)
    store.record_source_failure("example", feed, "HTTP 503", now=NOW + timedelta(hours=1))
    (health,) = store.source_health()
    assert (health.failures, health.last_error, health.last_success) == (2, "HTTP 503", None)

    store.record_source_success("example", feed, now=NOW + timedelta(hours=2), etag='"v2"')
    (health,) = store.source_health()
    assert (health.failures, health.last_error) == (0, "")
    assert store.source_validators("example") == ('"v2"', "")
    assert store.source_validators("unknown") == ("", "")


# --- issues ------------------------------------------------------------------------------


def test_save_issue_keeps_section_order_and_article_order(store: Store) -> None:
    a1, a2, a3, a4 = (article(n, NOW - timedelta(hours=n)) for n in range(1, 5))
    store.save_articles([a1, a2, a3, a4], now=NOW)
    # Neither alphabetical nor by id nor by date: the editor's order must survive.
    sections = (Section("Zoning", (a3, a1)), Section("Arts", (a4,)), Section("Budget", (a2,)))

    saved, created = store.save_issue(draft(*sections))

    assert created is True
    assert saved.id is not None
    loaded = store.load_issue(saved.id)
    assert loaded == saved
    assert [s.label for s in loaded.sections] == ["Zoning", "Arts", "Budget"]
    assert [[a.id for a in s.articles] for s in loaded.sections] == [
        ["id3", "id1"],
        ["id4"],
        ["id2"],
    ]
    assert (loaded.digest, loaded.period_key, loaded.title, loaded.intro) == (
        "weekly",
        "2025-W10",
        "Week 10",
        "Hello",
    )
    assert loaded.created == NOW and loaded.created.utcoffset() == timedelta(0)
    assert store.issue_status(saved.id) == "draft"


def test_second_save_for_the_same_period_returns_the_first_issue(store: Store) -> None:
    store.save_articles([article(1), article(2)], now=NOW)
    first, created_first = store.save_issue(draft(Section("News", (article(1),))))
    again, created_again = store.save_issue(
        draft(Section("Other", (article(2),)), title="A rebuilt week 10")
    )

    assert (created_first, created_again) == (True, False)
    assert again == first
    assert again.title == "Week 10"
    assert store.find_issue("weekly", "2025-W10") == first
    next_week, created = store.save_issue(draft(period_key="2025-W11"))
    assert created is True and next_week.id != first.id
    assert store.latest_issue_id("weekly") == next_week.id
    assert store.latest_issue_id("daily") is None


def test_issues_are_numbered_per_digest_in_the_order_they_are_built(store: Store) -> None:
    first, _ = store.save_issue(draft(period_key="2025-W10"))
    second, _ = store.save_issue(draft(period_key="2025-W11"))
    other = Issue(digest="daily", period_key="2025-03-03", title="Daily", created=NOW, sections=())
    daily, _ = store.save_issue(other)
    again, created = store.save_issue(draft(period_key="2025-W11"))

    assert (first.number, second.number, daily.number) == (1, 2, 1)
    assert created is False and again.number == 2
    assert store.load_issue(second.id or 0).number == 2  # type: ignore[union-attr]


def test_the_migration_numbers_issues_built_before_numbers_existed(sqlite_url: str) -> None:
    from alembic import command
    from alembic.config import Config

    store = Store.open(sqlite_url)
    try:
        ids = [store.save_issue(draft(period_key=f"2025-W{n}"))[0].id for n in (10, 11, 12)]
        config = Config()
        config.set_main_option("script_location", "digest:migrations")
        with store.engine.begin() as connection:
            config.attributes["connection"] = connection
            command.downgrade(config, "0003")
            command.upgrade(config, "head")
        assert [store.load_issue(i).number for i in ids] == [1, 2, 3]  # type: ignore[union-attr]
    finally:
        store.engine.dispose()


def test_the_database_refuses_a_second_issue_for_a_period(store: Store) -> None:
    """The unique key itself, not only the lookup, guards against two schedulers."""
    stored_issue(store)
    with pytest.raises(sa.exc.IntegrityError), store.transaction() as connection:
        connection.execute(
            sa.text(
                "INSERT INTO issues (digest, period_key, title, intro, status, created, updated)"
                " VALUES ('weekly', '2025-W10', 'dup', '', 'draft', :now, :now)"
            ),
            {"now": NOW.replace(tzinfo=None)},
        )


def test_issue_status_moves_and_unknown_issues_are_reported(store: Store) -> None:
    issue_id = stored_issue(store)
    store.set_issue_status(issue_id, "sending", now=NOW)
    assert store.issue_status(issue_id) == "sending"
    assert store.load_issue(issue_id + 100) is None
    with pytest.raises(ConfigError, match="no such issue"):
        store.issue_status(issue_id + 100)


# --- outbox rows -------------------------------------------------------------------------


def test_queue_recipients_writes_one_row_each_and_once(store: Store) -> None:
    issue_id = stored_issue(store)
    assert store.queue_recipients(issue_id, recipients(3), now=NOW) == 3
    # A resumed send offers everyone again (and one newcomer): only the newcomer is added.
    assert store.queue_recipients(issue_id, recipients(4), now=NOW) == 1

    rows = outbox_rows(store, issue_id)
    assert [(r.subscriber_id, r.email, r.state, r.attempts) for r in rows] == [
        (n, f"reader{n}@example.com", "queued", 0) for n in range(1, 5)
    ]
    assert rows[0].topics == ["city"]
    assert store.outbox_counts(issue_id) == {
        "queued": 4,
        "sending": 0,
        "sent": 0,
        "failed": 0,
        "unknown": 0,
    }


def test_claim_queued_moves_a_batch_to_sending(store: Store) -> None:
    issue_id = stored_issue(store)
    store.queue_recipients(issue_id, recipients(5), now=NOW)

    first = store.claim_queued(issue_id, 2, now=NOW)
    second = store.claim_queued(issue_id, 10, now=NOW)

    assert [r.subscriber_id for r in first] == [1, 2]
    assert [r.subscriber_id for r in second] == [3, 4, 5]
    assert {(r.state, r.attempts, r.topics) for r in first + second} == {("sending", 1, ("city",))}
    assert store.claim_queued(issue_id, 10, now=NOW) == []
    assert store.outbox_counts(issue_id)["sending"] == 5


def test_record_results_settles_claimed_rows(store: Store) -> None:
    issue_id = stored_issue(store)
    store.queue_recipients(issue_id, recipients(4), now=NOW)
    rows = store.claim_queued(issue_id, 4, now=NOW)
    ids = [str(r.id) for r in rows]

    store.record_results(
        [
            SendResult(ids[0], "sent", provider_id="250 accepted"),
            SendResult(ids[1], "failed", error="550 no such user"),
            SendResult(ids[2], "unknown", error="connection reset"),
            SendResult(ids[3], "queued", error="451 try later"),
        ],
        now=NOW,
    )

    settled = outbox_rows(store, issue_id)
    assert [(r.state, r.provider_id, r.last_error) for r in settled] == [
        ("sent", "250 accepted", ""),
        ("failed", "", "550 no such user"),
        ("unknown", "", "connection reset"),
        ("queued", "", "451 try later"),
    ]
    assert store.outbox_counts(issue_id) == {
        "queued": 1,
        "sending": 0,
        "sent": 1,
        "failed": 1,
        "unknown": 1,
    }


def test_release_gives_claimed_rows_back_as_never_attempted(store: Store) -> None:
    issue_id = stored_issue(store)
    store.queue_recipients(issue_id, recipients(2), now=NOW)
    rows = store.claim_queued(issue_id, 2, now=NOW)
    store.record_results([SendResult(str(rows[0].id), "sent")], now=NOW)

    store.release([r.id for r in rows], now=NOW)

    # Only the row still `sending` goes back; a settled row is never reopened.
    assert [(r.state, r.attempts) for r in outbox_rows(store, issue_id)] == [
        ("sent", 1),
        ("queued", 0),
    ]


def test_requeue_reopens_only_the_states_asked_for(store: Store) -> None:
    issue_id = stored_issue(store)
    store.queue_recipients(issue_id, recipients(4), now=NOW)
    rows = store.claim_queued(issue_id, 3, now=NOW)
    store.record_results(
        [SendResult(str(rows[0].id), "sent"), SendResult(str(rows[1].id), "unknown")], now=NOW
    )
    # rows[2] stays `sending`, as after a crash; the fourth row was never claimed.

    assert store.requeue(issue_id, ["unknown", "sending"], now=NOW) == 2
    assert [r.state for r in outbox_rows(store, issue_id)] == ["sent", "queued", "queued", "queued"]
    assert store.requeue(issue_id, ["failed"], now=NOW) == 0


def test_outbox_rows_belong_to_one_issue(store: Store) -> None:
    issue_id = stored_issue(store)
    other, _ = store.save_issue(draft(period_key="2025-W11"))
    assert other.id is not None
    store.queue_recipients(issue_id, recipients(2), now=NOW)
    store.queue_recipients(other.id, recipients(1), now=NOW)

    assert [r.subscriber_id for r in store.claim_queued(other.id, 10, now=NOW)] == [1]
    assert store.outbox_counts(issue_id)["queued"] == 2


def test_two_claimers_never_take_the_same_row(store: Store) -> None:
    """A second sender must not get rows that another sender is claiming right now."""
    issue_id = stored_issue(store)
    store.queue_recipients(issue_id, recipients(3), now=NOW)

    with store.engine.connect() as other_sender:
        # Another sender in the middle of its claim: its rows are written, not yet committed.
        other_sender.begin()
        other_sender.execute(
            sa.update(outbox)
            .where(outbox.c.issue_id == issue_id, outbox.c.state == "queued")
            .values(state="sending", attempts=outbox.c.attempts + 1)
        )
        claiming = threading.Event()

        def claim() -> list[int]:
            claiming.set()
            return [row.id for row in store.claim_queued(issue_id, 10, now=NOW)]

        with ThreadPoolExecutor(1) as pool:
            ours = pool.submit(claim)
            claiming.wait()
            time.sleep(0.3)  # let our claim reach the rows the other sender holds
            other_sender.commit()
            assert ours.result(timeout=15) == []
    assert store.outbox_counts(issue_id)["sending"] == 3


def test_a_request_s_readers_settle_together_and_each_keeps_its_message_id(store: Store) -> None:
    issue_id = stored_issue(store)
    people = [
        QueuedRecipient(n, f"reader{n}@example.com", (), f"<digest.{issue_id}.{n}@example.org>")
        for n in range(1, 1202)
    ]
    store.queue_recipients(issue_id, people, now=NOW)
    rows = store.claim_queued(issue_id, 1201, now=NOW)
    results = [SendResult(str(r.id), "sent", provider_id="request-1") for r in rows[:1200]]
    store.record_results([*results, SendResult(str(rows[1200].id), "failed", error="bad")], now=NOW)

    settled = outbox_rows(store, issue_id)
    assert {(r.state, r.provider_id) for r in settled[:1200]} == {("sent", "request-1")}
    assert (settled[1200].state, settled[1200].last_error) == ("failed", "bad")
    assert [r.message_id for r in settled[:2]] == [
        f"<digest.{issue_id}.1@example.org>",
        f"<digest.{issue_id}.2@example.org>",
    ]


def test_readers_of_one_topic_choice_are_queued_side_by_side(store: Store) -> None:
    issue_id = stored_issue(store)
    choices = [("city",), (), ("sport", "city")]
    people = [QueuedRecipient(n, f"reader{n}@example.com", choices[n % 3]) for n in range(1, 10)]
    store.queue_recipients(issue_id, people, now=NOW)

    claimed = store.claim_queued(issue_id, 9, now=NOW)
    runs = [
        topics
        for n, topics in enumerate(r.topics for r in claimed)
        if n == 0 or topics != claimed[n - 1].topics
    ]
    assert len(runs) == 3  # one run of rows per choice: a batch mostly shares one body
