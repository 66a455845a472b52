"""Ingest: bring documents in from feeds, pages and files, and turn them into Articles."""
