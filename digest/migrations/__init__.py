"""Alembic migrations for the digest and subscriber tables; applied automatically on open."""
