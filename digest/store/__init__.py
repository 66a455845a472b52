"""The database: opening it (migrations applied), and the digest's queries.

Rows become frozen dataclasses here; SQLAlchemy objects never leave this package. The outbox
and the provider's events are in digest.store.outbox; what the parts share, digest.store.base.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from sqlalchemy.engine import Connection, Engine

from digest.errors import ConfigError, DatabaseError, DigestError
from digest.models import Article, Issue, Section
from digest.slots import ApprovedIssue
from digest.sqlite_writes import take_turns_writing
from digest.store.base import LOOKUP_CHUNK as LOOKUP_CHUNK
from digest.store.base import chunks, dialect_insert
from digest.store.outbox import SHOWN_EVENTS as SHOWN_EVENTS
from digest.store.outbox import OutboxRow as OutboxRow
from digest.store.outbox import OutboxStore
from digest.store.outbox import ProviderEvent as ProviderEvent
from digest.store.outbox import QueuedRecipient as QueuedRecipient
from digest.tables import (
    articles,
    editor_sessions,
    issue_items,
    issues,
    outbox,
    source_paragraphs,
    sources,
)

log = logging.getLogger(__name__)


class IssueNotEditable(DigestError):
    """The issue is sending, sent, cancelled or gone: the editor's change was not made."""


class IssueChanged(IssueNotEditable):
    """The issue changed after the editor's form was made: the change was not made."""


SQLITE_BUSY_SECONDS = 10  # how long a SQLite writer waits for another to finish
PARAGRAPH_MEMORY = timedelta(days=180)
SENT_STATUSES = ("sending", "sent")  # an issue in these states has reached (some) readers
EDITABLE_STATUSES = ("draft", "approved")  # nobody has been sent these yet


@dataclass(frozen=True, slots=True)
class SourceHealth:
    name: str
    location: str
    last_attempt: datetime | None
    last_success: datetime | None
    failures: int
    last_error: str
    defect: str
    articles_seen: int


@dataclass(frozen=True, slots=True)
class IssueSummary:
    """An issue as a list shows it: its state, schedule, size and outbox counts by state."""

    id: int
    digest: str
    number: int
    title: str
    subject: str
    status: str
    created: datetime
    updated: datetime
    send_after: datetime | None
    item_count: int
    outbox: dict[str, int]


@dataclass(frozen=True, slots=True)
class PublishedIssue:
    """An issue that went out, as the archive lists it: `sections` are labels in reading order."""

    id: int
    digest: str
    number: int
    title: str
    subject: str
    created: datetime
    updated: datetime
    sections: tuple[str, ...]
    stories: int


def create_engine(url: str) -> Engine:
    """An engine for `url`; SQLite gets WAL, foreign keys and a busy timeout."""
    try:
        engine = sa.create_engine(url)
    except (sa.exc.ArgumentError, ImportError) as error:
        raise ConfigError(f"database_url {_redact(url)!r}: {_first_line(error)}") from error
    sa.event.listen(engine, "handle_error", _database_error(_redact(url)))
    if engine.dialect.name == "sqlite":
        sa.event.listen(engine, "connect", _sqlite_pragmas)
        take_turns_writing(engine, busy_timeout=SQLITE_BUSY_SECONDS)
    return engine


def _database_error(database: str) -> Callable[[sa.engine.ExceptionContext], Exception | None]:
    """Operational failures (locked, full, unreachable, connection lost) become one line naming
    the database, which the CLI shows as it shows any DigestError; other errors (a bug, a
    broken constraint) stay as SQLAlchemy raised them."""

    def translate(context: sa.engine.ExceptionContext) -> Exception | None:
        error = context.original_exception
        if isinstance(context.sqlalchemy_exception, sa.exc.OperationalError) and _is_failure(error):
            return DatabaseError(database, _first_line(error))
        return None

    return translate


def _is_failure(error: BaseException) -> bool:
    code = getattr(error, "sqlite_errorcode", None)  # only SQLite's errors carry one
    return code is None or code & 0xFF in SQLITE_FAILURES


# SQLite files its own complaints about our SQL (no such table, wrong column count) as
# OperationalError too; only these primary result codes are the database failing: BUSY,
# LOCKED, NOMEM, READONLY, IOERR, CORRUPT, FULL, CANTOPEN, PROTOCOL, NOTADB.
SQLITE_FAILURES = (5, 6, 7, 8, 10, 11, 13, 14, 15, 26)


def _redact(url: str) -> str:
    """The URL as it may be shown: never with its password."""
    try:
        return sa.engine.make_url(url).render_as_string(hide_password=True)
    except sa.exc.ArgumentError:
        return "<unparseable URL>"


def _first_line(error: object) -> str:
    """Drivers explain over several lines; our errors are one line."""
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    # WAL lets the web app read while a send writes; busy_timeout waits instead of failing.
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_SECONDS * 1000}")
    cursor.close()


def migrate(engine: Engine) -> None:
    """Bring the schema to the newest revision (a no-op when it is already there)."""
    config = Config()
    config.set_main_option("script_location", "digest:migrations")
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, "head")


class Store(OutboxStore):
    """Queries over one database. Pass it in; never reach for a global one."""

    @classmethod
    def open(cls, url: str) -> Store:
        engine = create_engine(url)
        try:
            migrate(engine)
        except sa.exc.OperationalError as error:
            raise ConfigError(f"database {engine.url!r}: {_first_line(error.orig)}") from error
        except DatabaseError as error:
            raise ConfigError(f"database {engine.url!r}: {error.reason}") from error
        return cls(engine)

    # --- sources -------------------------------------------------------------------------

    def source_validators(self, name: str) -> tuple[str, str]:
        """The (ETag, Last-Modified) remembered for a source, for a conditional GET."""
        with self.engine.connect() as connection:
            row = connection.execute(
                sa.select(sources.c.etag, sources.c.last_modified).where(sources.c.name == name)
            ).first()
        return (row.etag, row.last_modified) if row else ("", "")

    def record_source_success(
        self,
        name: str,
        location: str,
        *,
        now: datetime,
        etag: str = "",
        last_modified: str = "",
        defect: str = "",
        articles_seen: int = 0,
    ) -> None:
        values = {
            "location": location,
            "etag": etag,
            "last_modified": last_modified,
            "last_attempt": now,
            "last_success": now,
            "failures": 0,
            "last_error": "",
            "defect": defect,
            "articles_seen": articles_seen,
        }
        with self.transaction() as connection:
            self._upsert_source(connection, name, values)

    def record_source_failure(self, name: str, location: str, error: str, *, now: datetime) -> None:
        with self.transaction() as connection:
            failures = connection.execute(
                sa.select(sources.c.failures).where(sources.c.name == name)
            ).scalar()
            values = {
                "location": location,
                "last_attempt": now,
                "failures": (failures or 0) + 1,
                "last_error": error,
            }
            self._upsert_source(connection, name, values)

    @staticmethod
    def _upsert_source(connection: Connection, name: str, values: dict[str, Any]) -> None:
        # One statement: two schedulers fetching a new source at once would both insert it.
        insert = dialect_insert(connection)(sources).values(name=name, **values)
        connection.execute(insert.on_conflict_do_update(index_elements=["name"], set_=values))

    def source_health(self) -> list[SourceHealth]:
        with self.engine.connect() as connection:
            rows = connection.execute(sa.select(sources).order_by(sources.c.name)).all()
        return [
            SourceHealth(
                name=row.name,
                location=row.location,
                last_attempt=row.last_attempt,
                last_success=row.last_success,
                failures=row.failures,
                last_error=row.last_error,
                defect=row.defect,
                articles_seen=row.articles_seen,
            )
            for row in rows
        ]

    # --- articles ------------------------------------------------------------------------

    def unseen_articles(self, candidates: Sequence[Article]) -> list[Article]:
        """The candidates not stored yet, by id or canonical URL, and each one only once.

        Looked up by index in chunks, so the cost follows the batch, not the archive.
        """
        ids = sorted({article.id for article in candidates})
        keys = sorted({_article_key(article) for article in candidates})
        known: set[str] = set()
        with self.engine.connect() as connection:
            for chunk in chunks(ids):
                known.update(
                    connection.execute(
                        sa.select(articles.c.id).where(articles.c.id.in_(chunk))
                    ).scalars()
                )
            for chunk in chunks(keys):
                known.update(
                    connection.execute(
                        sa.select(articles.c.canonical_url).where(
                            articles.c.canonical_url.in_(chunk)
                        )
                    ).scalars()
                )
        unseen = []
        for article in candidates:
            key = _article_key(article)
            if article.id in known or key in known:
                continue
            known.update((article.id, key))
            unseen.append(article)
        return unseen

    def save_articles(self, new: Sequence[Article], *, now: datetime) -> int:
        """Store articles not stored yet (by id or canonical URL); returns how many were new."""
        rows = [_article_row(article, now) for article in self.unseen_articles(new)]
        if rows:
            with self.transaction() as connection:
                # Two schedulers may fetch the same feed at once: the article stored first wins.
                insert = dialect_insert(connection)(articles).on_conflict_do_nothing()
                connection.execute(insert, rows)
        return len(rows)

    # --- learned boilerplate ------------------------------------------------------------

    def count_paragraphs(
        self,
        source: str,
        per_article: Sequence[frozenset[str]],
        *,
        now: datetime,
        recurring_at: int,
    ) -> frozenset[str]:
        """Count each article's paragraphs once for `source`; return those now recurring.

        A paragraph is recurring once `recurring_at` distinct articles of the source carried
        it. Callers pass only articles not stored before, so a re-fetched item is not counted
        twice. Rare paragraphs not seen for PARAGRAPH_MEMORY are forgotten.
        """
        sightings = Counter(fingerprint for paragraphs in per_article for fingerprint in paragraphs)
        if not sightings:
            return frozenset()
        rows = [
            {"source": source, "fingerprint": fingerprint, "articles": count, "last_seen": now}
            for fingerprint, count in sorted(sightings.items())
        ]
        recurring: set[str] = set()
        with self.transaction() as connection:
            insert = dialect_insert(connection)(source_paragraphs)
            connection.execute(
                insert.on_conflict_do_update(
                    index_elements=["source", "fingerprint"],
                    set_={
                        "articles": source_paragraphs.c.articles + insert.excluded.articles,
                        "last_seen": insert.excluded.last_seen,
                    },
                ),
                rows,
            )
            for chunk in chunks(sorted(sightings)):
                recurring.update(
                    connection.execute(
                        sa.select(source_paragraphs.c.fingerprint).where(
                            source_paragraphs.c.source == source,
                            source_paragraphs.c.fingerprint.in_(chunk),
                            source_paragraphs.c.articles >= recurring_at,
                        )
                    ).scalars()
                )
            connection.execute(
                sa.delete(source_paragraphs).where(
                    source_paragraphs.c.source == source,
                    source_paragraphs.c.articles < recurring_at,
                    source_paragraphs.c.last_seen < now - PARAGRAPH_MEMORY,
                )
            )
        return frozenset(recurring)

    def articles_between(self, start: datetime, end: datetime) -> list[Article]:
        with self.engine.connect() as connection:
            rows = connection.execute(
                sa.select(articles)
                .where(articles.c.published >= start, articles.c.published < end)
                .order_by(articles.c.published.desc(), articles.c.id)
            ).all()
        return [_article(row) for row in rows]

    def articles_by_id(self, ids: Sequence[str]) -> dict[str, Article]:
        with self.engine.connect() as connection:
            rows = connection.execute(sa.select(articles).where(articles.c.id.in_(ids))).all()
        return {row.id: _article(row) for row in rows}

    # --- issues --------------------------------------------------------------------------

    def save_issue(self, issue: Issue) -> tuple[Issue, bool]:
        """Store a draft issue; if its period already has one, return that instead (False)."""
        existing = self.find_issue(issue.digest, issue.period_key)
        if existing is not None:
            return existing, False
        try:
            with self.transaction() as connection:
                number = connection.execute(
                    sa.select(sa.func.coalesce(sa.func.max(issues.c.number), 0) + 1).where(
                        issues.c.digest == issue.digest
                    )
                ).scalar_one()
                issue_id = connection.execute(
                    sa.insert(issues).values(
                        digest=issue.digest,
                        number=number,
                        period_key=issue.period_key,
                        title=issue.title,
                        intro=issue.intro,
                        subject=issue.subject,
                        status="draft",
                        created=issue.created,
                        updated=issue.created,
                    )
                ).inserted_primary_key[0]
                items = _item_rows(issue_id, issue)
                if items:
                    connection.execute(sa.insert(issue_items), items)
        except sa.exc.IntegrityError:
            # Another process built this period between our lookup and our insert.
            winner = self.find_issue(issue.digest, issue.period_key)
            if winner is None:
                raise
            return winner, False
        stored = self.load_issue(issue_id)
        assert stored is not None
        return stored, True

    def last_sent_issue_time(self, digest: str) -> datetime | None:
        """When the digest's newest issue that went out (sending or sent) was built."""
        with self.engine.connect() as connection:
            return connection.execute(
                sa.select(sa.func.max(issues.c.created)).where(
                    issues.c.digest == digest, issues.c.status.in_(SENT_STATUSES)
                )
            ).scalar()

    def already_sent(self, digest: str, article_ids: Sequence[str]) -> set[str]:
        """Those of `article_ids` that an issue of `digest` has already carried out."""
        found: set[str] = set()
        with self.engine.connect() as connection:
            for chunk in chunks(sorted(set(article_ids))):
                found.update(
                    connection.execute(
                        sa.select(issue_items.c.article_id)
                        .join(issues, issues.c.id == issue_items.c.issue_id)
                        .where(
                            issues.c.digest == digest,
                            issues.c.status.in_(SENT_STATUSES),
                            issue_items.c.article_id.in_(chunk),
                        )
                    ).scalars()
                )
        return found

    def find_issue(self, digest: str, period_key: str) -> Issue | None:
        with self.engine.connect() as connection:
            issue_id = connection.execute(
                sa.select(issues.c.id).where(
                    issues.c.digest == digest, issues.c.period_key == period_key
                )
            ).scalar()
        return self.load_issue(issue_id) if issue_id is not None else None

    def latest_issue_id(self, digest: str | None = None) -> int | None:
        query = sa.select(sa.func.max(issues.c.id))
        if digest is not None:
            query = query.where(issues.c.digest == digest)
        with self.engine.connect() as connection:
            return connection.execute(query).scalar()

    def load_issue(self, issue_id: int) -> Issue | None:
        with self.engine.connect() as connection:
            row = connection.execute(sa.select(issues).where(issues.c.id == issue_id)).first()
            if row is None:
                return None
            items = connection.execute(
                sa.select(issue_items, articles)
                .join(articles, articles.c.id == issue_items.c.article_id)
                .where(issue_items.c.issue_id == issue_id)
                .order_by(issue_items.c.position)
            ).all()
        sections: dict[str, list[Article]] = {}
        for item in items:
            sections.setdefault(item.section, []).append(_article(item))
        return Issue(
            id=row.id,
            number=row.number,
            digest=row.digest,
            period_key=row.period_key,
            title=row.title,
            intro=row.intro,
            created=row.created,
            sections=tuple(Section(label, tuple(items)) for label, items in sections.items()),
            subject=row.subject,
            pinned=tuple(item.article_id for item in items if item.pinned),
        )

    def published_issues(
        self, digests: Sequence[str], *, offset: int = 0, limit: int = 50
    ) -> tuple[list[PublishedIssue], int]:
        """Issues of `digests` that went out (sending or sent), newest first, from `offset`;
        and how many there are in all (for the archive's pages)."""
        published = sa.and_(issues.c.status.in_(SENT_STATUSES), issues.c.digest.in_(digests))
        with self.engine.connect() as connection:
            total = connection.execute(
                sa.select(sa.func.count()).select_from(issues).where(published)
            ).scalar_one()
            rows = connection.execute(
                sa.select(issues)
                .where(published)
                .order_by(issues.c.id.desc())
                .offset(offset)
                .limit(limit)
            ).all()
            # One grouped query for the page: each issue's sections, first-placed first.
            sections = connection.execute(
                sa.select(
                    issue_items.c.issue_id,
                    issue_items.c.section,
                    sa.func.min(issue_items.c.position).label("first"),
                    sa.func.count().label("stories"),
                )
                .where(issue_items.c.issue_id.in_([row.id for row in rows]))
                .group_by(issue_items.c.issue_id, issue_items.c.section)
                .order_by(issue_items.c.issue_id, "first")
            ).all()
        labels: dict[int, list[str]] = {}
        stories: Counter[int] = Counter()
        for item in sections:
            labels.setdefault(item.issue_id, []).append(item.section)
            stories[item.issue_id] += item.stories
        page = [
            PublishedIssue(
                id=row.id,
                digest=row.digest,
                number=row.number,
                title=row.title,
                subject=row.subject,
                created=row.created,
                updated=row.updated,
                sections=tuple(labels.get(row.id, ())),
                stories=stories[row.id],
            )
            for row in rows
        ]
        return page, total

    def issue_status(self, issue_id: int) -> str:
        with self.engine.connect() as connection:
            status = connection.execute(
                sa.select(issues.c.status).where(issues.c.id == issue_id)
            ).scalar()
        if status is None:
            raise ConfigError(f"issue {issue_id}: no such issue")
        return status

    def set_issue_status(self, issue_id: int, status: str, *, now: datetime) -> None:
        with self.transaction() as connection:
            connection.execute(
                sa.update(issues).where(issues.c.id == issue_id).values(status=status, updated=now)
            )

    # --- the editor's changes (digest/web/editor.py) ---------------------------------------

    def save_issue_edits(
        self, issue: Issue, *, now: datetime, seen: datetime | None = None
    ) -> None:
        """Store an edited issue's items, sections, pins, intro and subject, in one transaction.

        Only a draft or approved issue changes; an approved one goes back to draft (the approval
        was for what the editor saw). IssueNotEditable otherwise; IssueChanged when `seen` (the
        `updated` stamp the editor's form was made from) is given and is no longer current.
        """
        assert issue.id is not None
        with self.transaction() as connection:
            changed = connection.execute(
                sa.update(issues)
                .where(
                    issues.c.id == issue.id,
                    issues.c.status.in_(EDITABLE_STATUSES),
                    *_unchanged_since(seen),
                )
                .values(
                    intro=issue.intro,
                    subject=issue.subject,
                    status="draft",
                    send_after=None,
                    editor_took_over=True,  # scheduled runs leave this draft alone now
                    updated=_next_stamp(now, seen),
                )
            ).rowcount
            if not changed:
                raise self._not_editable(connection, issue.id, "edited")
            connection.execute(sa.delete(issue_items).where(issue_items.c.issue_id == issue.id))
            items = _item_rows(issue.id, issue)
            if items:
                connection.execute(sa.insert(issue_items), items)

    def approve_issue(
        self,
        issue_id: int,
        *,
        send_after: datetime | None,
        now: datetime,
        seen: datetime | None = None,
    ) -> None:
        """Approve a draft (or re-time an approved issue): sent at `send_after`, or at once.

        With `seen`, only the issue as the editor saw it (IssueChanged otherwise)."""
        self._move_issue(
            issue_id, "approved", "approved", now=now, send_after=send_after, seen=seen
        )

    def cancel_issue(self, issue_id: int, *, now: datetime, seen: datetime | None = None) -> None:
        """Cancel an issue nobody has been sent yet (draft or approved)."""
        self._move_issue(issue_id, "cancelled", "cancelled", now=now, send_after=None, seen=seen)

    def _move_issue(
        self,
        issue_id: int,
        status: str,
        verb: str,
        *,
        now: datetime,
        send_after: datetime | None,
        seen: datetime | None = None,
    ) -> None:
        with self.transaction() as connection:
            changed = connection.execute(
                sa.update(issues)
                .where(
                    issues.c.id == issue_id,
                    issues.c.status.in_(EDITABLE_STATUSES),
                    *_unchanged_since(seen),
                )
                .values(status=status, send_after=send_after, updated=_next_stamp(now, seen))
                # An editor's move: scheduled runs leave the issue alone; lateness counts from it.
                .values(editor_took_over=True, approved_at=now if status == "approved" else None)
            ).rowcount
            if not changed:
                raise self._not_editable(connection, issue_id, verb)

    @staticmethod
    def _not_editable(connection: Connection, issue_id: int, verb: str) -> IssueNotEditable:
        """Why an editor's change matched no row: gone, past editing, or changed meanwhile."""
        status = connection.execute(
            sa.select(issues.c.status).where(issues.c.id == issue_id)
        ).scalar()
        if status is None:
            return IssueNotEditable(f"issue {issue_id}: no such issue")
        if status in EDITABLE_STATUSES:
            return IssueChanged(f"issue {issue_id} changed since it was opened; it was not {verb}")
        return IssueNotEditable(
            f"issue {issue_id} is {status}; only a draft or approved issue can be {verb}"
        )

    # --- editor sessions (digest/web/editor_auth.py) -------------------------------------

    def create_editor_session(self, id_hash: str, *, now: datetime, expires: datetime) -> None:
        """Record a login; sessions that have expired are forgotten at the same time."""
        with self.transaction() as connection:
            connection.execute(sa.delete(editor_sessions).where(editor_sessions.c.expires <= now))
            connection.execute(
                sa.insert(editor_sessions).values(id_hash=id_hash, created=now, expires=expires)
            )

    def is_editor_session(self, id_hash: str, *, now: datetime) -> bool:
        """Whether this session was started, has not ended and has not expired."""
        with self.engine.connect() as connection:
            return (
                connection.execute(
                    sa.select(editor_sessions.c.id_hash).where(
                        editor_sessions.c.id_hash == id_hash, editor_sessions.c.expires > now
                    )
                ).first()
                is not None
            )

    def end_editor_sessions(self, id_hash: str | None = None) -> int:
        """End one session (logging out), or every one with None; how many ended."""
        query = sa.delete(editor_sessions)
        if id_hash is not None:
            query = query.where(editor_sessions.c.id_hash == id_hash)
        with self.transaction() as connection:
            return connection.execute(query).rowcount

    def issue_summaries(self, limit: int = 100) -> list[IssueSummary]:
        """The newest issues first, each with its item count and outbox counts by state."""
        with self.engine.connect() as connection:
            rows = connection.execute(
                sa.select(issues).order_by(issues.c.created.desc(), issues.c.id.desc()).limit(limit)
            ).all()
            ids = [row.id for row in rows]
            items = dict(
                connection.execute(
                    sa.select(issue_items.c.issue_id, sa.func.count())
                    .where(issue_items.c.issue_id.in_(ids))
                    .group_by(issue_items.c.issue_id)
                ).all()
            )
            states: dict[int, dict[str, int]] = {}
            for issue_id, state, count in connection.execute(
                sa.select(outbox.c.issue_id, outbox.c.state, sa.func.count())
                .where(outbox.c.issue_id.in_(ids))
                .group_by(outbox.c.issue_id, outbox.c.state)
            ).all():
                states.setdefault(issue_id, {})[state] = count
        return [_issue_summary(row, items.get(row.id, 0), states.get(row.id, {})) for row in rows]

    def issue_summary(self, issue_id: int) -> IssueSummary | None:
        with self.engine.connect() as connection:
            row = connection.execute(sa.select(issues).where(issues.c.id == issue_id)).first()
            if row is None:
                return None
            items = connection.execute(
                sa.select(sa.func.count()).where(issue_items.c.issue_id == issue_id)
            ).scalar_one()
        return _issue_summary(row, items, self.outbox_counts(issue_id))

    # --- the scheduler (digest/schedule.py, decisions in digest/slots.py) ----------------

    def approved_issues(self) -> list[ApprovedIssue]:
        """Approved issues waiting to go, oldest first, with their send time (None: at once)."""
        with self.engine.connect() as connection:
            rows = connection.execute(
                sa.select(issues.c.id, issues.c.digest, issues.c.send_after, issues.c.approved_at)
                .where(issues.c.status == "approved")
                .order_by(issues.c.id)
            ).all()
        return [ApprovedIssue(row.id, row.digest, row.send_after, row.approved_at) for row in rows]

    def approve_draft_for_later(
        self, issue_id: int, *, send_after: datetime | None, now: datetime
    ) -> bool:
        """A scheduled run auto-approves its draft: sent at `send_after` (None: at once).

        False when the issue is no longer a draft, or an editor has taken it over (saved,
        approved or cancelled it): then it is theirs, and no run approves it behind their back.
        """
        with self.transaction() as connection:
            return bool(
                connection.execute(
                    sa.update(issues)
                    .where(
                        issues.c.id == issue_id,
                        issues.c.status == "draft",
                        issues.c.editor_took_over == sa.false(),
                    )
                    .values(status="approved", send_after=send_after, approved_at=now, updated=now)
                ).rowcount
            )

    def start_sending(
        self, issue_id: int, *, now: datetime, from_statuses: Sequence[str] = EDITABLE_STATUSES
    ) -> bool:
        """`from_statuses` (draft or approved) → sending, in one statement, so no edit lands
        after the issue's content is read for sending. True only for the caller that moved it.

        Scheduled sends pass ("approved",): a draft an editor just took back is not sent."""
        with self.transaction() as connection:
            return bool(
                connection.execute(
                    sa.update(issues)
                    .where(issues.c.id == issue_id, issues.c.status.in_(tuple(from_statuses)))
                    .values(status="sending", updated=now)
                ).rowcount
            )

    def hold_approved(self, issue_id: int, *, now: datetime) -> bool:
        """An approved issue too late to send unattended goes back to draft for an editor.

        True only for the one caller that moved it, so editors are told once.
        """
        with self.transaction() as connection:
            return bool(
                connection.execute(
                    sa.update(issues)
                    .where(issues.c.id == issue_id, issues.c.status == "approved")
                    .values(status="draft", send_after=None, updated=now)
                ).rowcount
            )


def _unchanged_since(seen: datetime | None) -> list[Any]:
    """The WHERE clause that ties an editor's change to the version of the issue they saw."""
    return [] if seen is None else [issues.c.updated == seen]


def _next_stamp(now: datetime, seen: datetime | None) -> datetime:
    """The issue's new `updated`: `now`, but always after `seen`, so that every editor change
    makes forms opened before it stale even when two land within one clock tick."""
    if seen is None or now > seen:
        return now
    return seen + timedelta(microseconds=1)


def _item_rows(issue_id: int, issue: Issue) -> list[dict[str, Any]]:
    """issue_items rows: reading order as `position`, each item's section and pin."""
    pinned = set(issue.pinned)
    placed = ((section, article) for section in issue.sections for article in section.articles)
    return [
        {
            "issue_id": issue_id,
            "article_id": article.id,
            "position": position,
            "section": section.label,
            "pinned": article.id in pinned,
        }
        for position, (section, article) in enumerate(placed)
    ]


def _issue_summary(row: Any, item_count: int, states: dict[str, int]) -> IssueSummary:
    counts = {"queued": 0, "sending": 0, "sent": 0, "failed": 0, "unknown": 0, **states}
    return IssueSummary(
        id=row.id,
        digest=row.digest,
        number=row.number,
        title=row.title,
        subject=row.subject,
        status=row.status,
        created=row.created,
        updated=row.updated,
        send_after=row.send_after,
        item_count=item_count,
        outbox=counts,
    )


def _article_key(article: Article) -> str:
    return article.canonical_url or article.url


def _article_row(article: Article, now: datetime) -> dict[str, Any]:
    return {
        "id": article.id,
        "source": article.source,
        "url": article.url,
        "canonical_url": _article_key(article),
        "guid": article.guid,
        "title": article.title,
        "summary": article.summary,
        "text": article.text,
        "html": article.html,
        "author": article.author,
        "language": article.language,
        "image": article.image,
        "categories": list(article.categories),
        "also_in": list(article.also_in),
        "origin": article.origin,
        "published": article.published,
        "fetched": now,
    }


def _article(row: Any) -> Article:
    return Article(
        id=row.id,
        url=row.url,
        title=row.title,
        text=row.text,
        source=row.source,
        published=row.published,
        canonical_url=row.canonical_url,
        guid=row.guid,
        summary=row.summary,
        html=row.html,
        author=row.author,
        language=row.language,
        image=row.image,
        categories=tuple(row.categories),
        also_in=tuple(row.also_in),
        origin=row.origin,
    )
