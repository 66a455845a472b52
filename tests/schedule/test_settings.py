"""The scheduling settings: defaults, one-line errors, and every one documented."""

from __future__ import annotations

from pathlib import Path

import pytest

from digest.config import SchedulerConfig, parse_settings
from digest.errors import ConfigError

DOCS = Path(__file__).resolve().parents[2] / "docs"
BASE = (
    'version = 1\n[[sources]]\nname = "courier"\nurl = "feed.xml"\n'
    '[[digests]]\nname = "weekly"\ntitle = "W"\n'
)


def load(extra_digest: str = "", extra_top: str = ""):
    return parse_settings(BASE + extra_digest + extra_top, Path("/srv/digest.toml"), {})


def test_defaults_fetch_hourly_hold_after_12_hours_and_grace_an_hour():
    settings = load()
    assert settings.sources[0].every == 60
    digest = settings.digests[0]
    assert (digest.late_after, digest.send_window, digest.editors) == (12, "", ())
    assert (settings.file.scheduler.misfire_grace, settings.file.scheduler.due_every) == (60, 1)


def test_scheduling_settings_are_read():
    settings = load(
        'late_after = 2.5\nsend_window = "22:00-06:00"\neditors = ["ed@example.org"]\n',
        "[scheduler]\nmisfire_grace = 5\n",
    )
    digest = settings.digests[0]
    assert (digest.late_after, digest.send_window, digest.editors) == (
        2.5,
        "22:00-06:00",
        ("ed@example.org",),
    )
    assert settings.file.scheduler.misfire_grace == 5


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (
            'send_window = "8-20"',
            'digests[0: weekly].send_window: send_window must look like "08:00-20:00"',
        ),
        ('send_window = "09:00-09:00"', "opens and closes at once"),
        (
            'editors = ["not-an-address"]',
            "digests[0: weekly].editors: 'not-an-address' is not an email",
        ),
        ("late_after = 0", "digests[0: weekly].late_after: Input should be greater than 0"),
        (
            'schedule = "0 8 * * 8"',
            "digests[0: weekly].schedule: schedule '0 8 * * 8': weekday field",
        ),
        ('schedule = "61 8 * * 1"', "digests[0: weekly].schedule: schedule '61 8 * * 1'"),
    ],
)
def test_a_bad_scheduling_setting_is_one_line_naming_the_field(extra: str, message: str):
    with pytest.raises(ConfigError) as caught:
        load(extra + "\n")
    assert message in str(caught.value) and "\n" not in str(caught.value)


def test_a_fetch_interval_of_zero_minutes_is_refused():
    text = BASE.replace('url = "feed.xml"\n', 'url = "feed.xml"\nevery = 0\n')
    with pytest.raises(ConfigError, match=r"sources\[0: courier\]\.every"):
        parse_settings(text, Path("/srv/digest.toml"), {})


def test_every_scheduler_setting_has_help_and_is_documented():
    documented = (DOCS / "configuration.md").read_text(encoding="utf-8")
    for name, field in SchedulerConfig.model_fields.items():
        assert field.description, name
        assert f"| `{name}` |" in documented, name


def test_the_scheduling_page_names_every_scheduling_setting():
    page = (DOCS / "scheduling.md").read_text(encoding="utf-8")
    for name in (
        "every",
        "schedule",
        "timezone",
        "late_after",
        "send_window",
        "editors",
        "auto_approve",
        "misfire_grace",
        "due_every",
        "--no-scheduler",
    ):
        assert f"`{name}" in page or (name.startswith("--") and name in page), name
