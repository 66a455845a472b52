"""The delivered digest as a spam filter sees it: SpamAssassin's local rules, no network.

`digest demo` runs once through the real CLI; the largest delivered .eml is scored by Debian's
`spamassassin -L -t` with empty user preferences, Bayes off and a throwaway HOME, so the
verdict depends on the message and the stock rules only.
"""

from __future__ import annotations

import email
import json
import re
import shutil
import subprocess
from dataclasses import dataclass
from email.policy import default
from pathlib import Path

import pytest
from typer.testing import CliRunner

from digest.cli import app

SPAMASSASSIN = shutil.which("spamassassin")
# SpamAssassin calls a message spam at 5 points; a digest its readers asked for aims at ~0.
MAX_SCORE = 0.5

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        SPAMASSASSIN is None, reason="spamassassin is absent (apt-get install spamassassin)"
    ),
]

# A line of the report's table: " 0.7 HTML_FONT_LOW_CONTRAST BODY: HTML font color similar ..."
REPORT_LINE = re.compile(r"^\s*(-?\d+(?:\.\d+)?)\s+([A-Z0-9_]+)\s+(\S.*)$")


@dataclass(frozen=True, slots=True)
class Verdict:
    """What SpamAssassin concluded: total score, rules hit, and each rule's points and why."""

    score: float
    rules: tuple[str, ...]
    explained: tuple[str, ...]

    def describe(self) -> str:
        return f"score {self.score} from {len(self.rules)} rules:\n" + "\n".join(self.explained)


def parse_verdict(checked: bytes) -> Verdict:
    """Read the X-Spam-Status header and the report table that `spamassassin -t` adds."""
    message = email.message_from_bytes(checked, policy=default)
    # The header folds its rule list after a comma; unfold it back into one token.
    status = re.sub(r",\s+", ",", " ".join(str(message["X-Spam-Status"] or "").split()))
    found = re.search(r"score=(-?[\d.]+) .*tests=(\S*)", status)
    assert found, f"no X-Spam-Status in spamassassin's output: {status!r}"
    score, tests = float(found.group(1)), found.group(2)
    rules = tuple(rule for rule in tests.split(",") if rule and rule != "none")
    report = checked.decode("utf-8", "replace").rpartition("Content analysis details:")[2]
    return Verdict(score, rules, explain_rules(report, rules) or rules)


def explain_rules(report: str, rules: tuple[str, ...]) -> tuple[str, ...]:
    """'0.7 RULE: description' per rule hit; a description may wrap onto indented lines."""
    explained: list[str] = []
    for line in report.splitlines():
        if row := REPORT_LINE.match(line):
            points, rule, description = row.groups()
            explained.append(f"{points:>5} {rule}: {description}" if rule in rules else "")
        elif explained and explained[-1] and line.startswith(" " * 20) and line.strip():
            explained[-1] += " " + line.strip()
    return tuple(line for line in explained if line)


def spamassassin_verdict(eml: bytes, home: Path) -> Verdict:
    """Score one message with local tests only and the stock rules."""
    prefs = home / "user_prefs"
    prefs.write_text("", encoding="utf-8")
    checked = subprocess.run(
        [str(SPAMASSASSIN), "-L", "-t", f"--prefspath={prefs}", "--cf=use_bayes 0"],
        input=eml,
        capture_output=True,
        env={"HOME": str(home), "PATH": "/usr/bin:/bin", "LANG": "C.UTF-8"},
        timeout=300,
        check=False,
    )
    assert checked.returncode == 0, checked.stderr.decode("utf-8", "replace")[-2000:]
    return parse_verdict(checked.stdout)


@pytest.fixture(scope="module")
def delivered_eml(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    """The largest message `digest demo` delivers (the reader with every topic)."""
    folder = tmp_path_factory.mktemp("spam") / "digest-demo"
    result = CliRunner().invoke(app, ["demo", str(folder), "--json"])
    assert result.exit_code == 0, result.output
    outbox = Path(json.loads(result.stdout)["outbox"])
    largest = max(outbox.glob("*.eml"), key=lambda path: path.stat().st_size)
    return largest.read_bytes()


def test_the_delivered_digest_scores_near_zero(
    delivered_eml: bytes, tmp_path_factory: pytest.TempPathFactory
) -> None:
    verdict = spamassassin_verdict(delivered_eml, tmp_path_factory.mktemp("spamassassin-home"))
    assert verdict.score <= MAX_SCORE, verdict.describe()


def test_the_verdict_parser_reads_scores_and_rules() -> None:
    # The parser must see a score when there is one, or the check above could never fail.
    checked = (
        b"X-Spam-Status: Yes, score=6.2 required=5.0 tests=HTML_FONT_LOW_CONTRAST,\n"
        b"\tMISSING_DATE autolearn=disabled version=4.0.1\n"
        b"Subject: x\n\nbody\n"
        b"Content analysis details:   (6.2 points, 5.0 required)\n\n"
        b" pts rule name              description\n"
        b"---- ---------------------- ------------------------------------------\n"
        b" 0.7 HTML_FONT_LOW_CONTRAST BODY: HTML font color similar or identical to\n"
        b"                            background\n"
        b" 5.5 MISSING_DATE           Missing Date: header\n"
    )
    verdict = parse_verdict(checked)
    assert verdict.score == 6.2
    assert verdict.rules == ("HTML_FONT_LOW_CONTRAST", "MISSING_DATE")
    assert verdict.explained == (
        "  0.7 HTML_FONT_LOW_CONTRAST: BODY: HTML font color similar or identical to background",
        "  5.5 MISSING_DATE: Missing Date: header",
    )
