"""Alembic environment: runs on the connection the store hands over (see digest.store)."""

from alembic import context

from digest.tables import metadata as digest_metadata
from subscribers.tables import metadata as subscribers_metadata

target_metadata = [digest_metadata, subscribers_metadata]

connection = context.config.attributes["connection"]
context.configure(
    connection=connection,
    target_metadata=target_metadata,
    # SQLite cannot ALTER most things; batch mode rebuilds tables instead.
    render_as_batch=True,
)
with context.begin_transaction():
    context.run_migrations()
