"""What every part of the store shares: its engine and transactions, and the spelling of
bulk statements for SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any, TypeVar

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection, Engine

LOOKUP_CHUNK = 500  # values per IN (...) list; well under every backend's parameter limit

T = TypeVar("T")


class StoreBase:
    """One database's engine; the store's parts (digest.store.outbox, …) build on it."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    @contextmanager
    def transaction(self) -> Iterator[Connection]:
        with self.engine.begin() as connection:
            yield connection


def chunks(values: Sequence[T], size: int = LOOKUP_CHUNK) -> Iterator[Sequence[T]]:
    for start in range(0, len(values), size):
        yield values[start : start + size]


def id_chunks(connection: Connection, ids: Sequence[int]) -> Iterator[Sequence[int]]:
    """Row ids in as few statements as the database takes: all at once on PostgreSQL (one
    array parameter), else IN lists of LOOKUP_CHUNK."""
    if connection.dialect.name == "postgresql":
        return iter((ids,)) if ids else iter(())
    return chunks(ids)


def among(connection: Connection, column: Any, ids: Sequence[int]) -> sa.ColumnElement[bool]:
    """`column` is one of `ids`. PostgreSQL gets one array (`= ANY`): binding a thousand
    separate values cost it more than the UPDATE did."""
    if connection.dialect.name == "postgresql":
        return column == sa.any_(sa.bindparam(None, list(ids), type_=postgresql.ARRAY(sa.Integer)))
    return column.in_(ids)


def dialect_insert(connection: Connection) -> Any:
    """INSERT … ON CONFLICT, spelled by the dialect in use (both speak it)."""
    if connection.dialect.name == "postgresql":
        return postgresql.insert
    return sqlite.insert
