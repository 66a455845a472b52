"""Errors the user can act on.

DigestError
├── ConfigError      digest.toml or an environment override is wrong
│   └── EmbeddingsUnavailable   (digest.embeddings) grouping by embeddings without its extra
├── SourceError      a source cannot be fetched or parsed
├── ExtractError     a document holds no article we can read
├── RenderError      a template does not compile or render
├── DeliveryError    the mail backend refused or is misconfigured
├── DatabaseError    the database is locked, full or unreachable (digest.store)
└── NothingNew       no issue: too few articles arrived since the last one (not a failure)

The CLI and the web layer catch DigestError and show its one-line message; anything else is a
bug and gets a traceback in the log.
"""


class DigestError(Exception):
    """A problem the user can act on; its message is one line."""


class ConfigError(DigestError):
    pass


class SourceError(DigestError):
    pass


class ExtractError(DigestError):
    pass


class RenderError(DigestError):
    pass


class DeliveryError(DigestError):
    pass


class DatabaseError(DigestError):
    """The database could not do its part (locked, full, gone); `reason` is the driver's line."""

    def __init__(self, database: str, reason: str) -> None:
        super().__init__(f"database {database}: {reason}")
        self.database = database
        self.reason = reason

    def __reduce__(self) -> tuple[type, tuple[str, str]]:
        return (type(self), (self.database, self.reason))  # survives pickling (Celery results)


class NothingNew(DigestError):
    """Not a failure: the digest has nothing new worth an issue, so none is built."""
