"""The plain-text alternative: tidy what the text template produced into readable lines."""

from __future__ import annotations

import re

_BLANK_RUN = re.compile(r"\n{3,}")
# Controls but tab and line ends: a terminal or a mail client would act on them (an ESC starts
# an ANSI sequence), and a feed title is no reason to.
_CONTROLS = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")


def tidy_text(text: str) -> str:
    """No controls, no trailing spaces, at most one blank line in a row, one final newline."""
    text = _CONTROLS.sub("", text)
    lines = [line.rstrip() for line in text.replace("\r\n", "\n").split("\n")]
    return _BLANK_RUN.sub("\n\n", "\n".join(lines)).strip("\n") + "\n"
