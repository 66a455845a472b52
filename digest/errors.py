"""Errors the user can act on.

DigestError
├── ConfigError      digest.toml or an environment override is wrong
│   └── EmbeddingsUnavailable   (digest.embeddings) grouping by embeddings without its extra
├── SourceError      a source cannot be fetched or parsed
├── ExtractError     a document holds no article we can read
├── RenderError      a template does not compile or render
├── DeliveryError    the mail backend refused or is misconfigured
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


class NothingNew(DigestError):
    """Not a failure: the digest has nothing new worth an issue, so none is built."""
