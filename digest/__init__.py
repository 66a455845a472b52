"""digest: many sources in, one clean topic digest out, to every inbox, exactly once."""

__version__ = "0.1.0"
