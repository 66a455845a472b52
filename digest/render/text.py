"""The plain-text alternative: tidy what the text template produced into readable lines."""

from __future__ import annotations

import re

_BLANK_RUN = re.compile(r"\n{3,}")


def tidy_text(text: str) -> str:
    """No trailing spaces, at most one blank line in a row, exactly one final newline."""
    lines = [line.rstrip() for line in text.replace("\r\n", "\n").split("\n")]
    return _BLANK_RUN.sub("\n\n", "\n".join(lines)).strip("\n") + "\n"
