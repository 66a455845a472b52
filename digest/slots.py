"""When a digest's issues are due: schedule slots, the late cut-off and send windows (pure).

A digest's `schedule` is a crontab line read in its own time zone; each time it names is a
slot. An issue belongs to its slot's period, so a run that comes late (after a restart) builds
the same issue the punctual run would have. Sending is decided here and done elsewhere: an
issue whose slot is longer ago than `late_after` is held for an editor, and outside the
digest's send window it waits for the window to open.

APScheduler's CronTrigger is only used as a calculator of fire times, so the slots these
functions see are exactly the times the scheduler fires at.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta
from typing import Literal
from zoneinfo import ZoneInfo

from apscheduler.triggers.cron import CronTrigger

# crontab counts Sunday as 0 (and 7); APScheduler counts Monday as 0. Names are the same in both.
_DAY_NAMES = ("sun", "mon", "tue", "wed", "thu", "fri", "sat")
_WINDOW = re.compile(r"^\s*(\d{1,2}):(\d{2})\s*-\s*(\d{1,2}):(\d{2})\s*$")
# How far back a slot is looked for, shortest first: each step costs the fires it spans.
_LOOKBACKS = tuple(timedelta(hours=h) for h in (2, 25, 8 * 24 + 1, 32 * 24, 367 * 24, 5 * 366 * 24))


# --- schedule ------------------------------------------------------------------------------


def crontab_weekdays(field: str) -> str:
    """A crontab day-of-week field in APScheduler's terms: '1-5' → 'mon,tue,wed,thu,fri'.

    CronTrigger.from_crontab reads the numbers as Monday = 0, so crontab's '1' (Monday) would
    fire on Tuesdays; spelling the days as names avoids that.
    """
    text = field.strip().lower()
    if text in ("*", "?"):
        return "*"
    days: set[int] = set()
    for part in text.split(","):
        base, slash, step_text = part.partition("/")
        if slash and not step_text.isdigit() or (slash and int(step_text) == 0):
            raise ValueError(f"weekday field {field!r}: bad step in {part!r}")
        step = int(step_text) if slash else 1
        if base in ("*", "?"):
            start, end = 0, 6
        elif "-" in base:
            first, last = base.split("-", 1)
            start, end = _weekday(first, field), _weekday(last, field)
        else:
            start = _weekday(base, field)
            end = 6 if slash else start
        if start > end:
            raise ValueError(f"weekday field {field!r}: range {base!r} runs backwards")
        days.update(day % 7 for day in range(start, end + 1, step))
    return ",".join(_DAY_NAMES[day] for day in sorted(days))


def _weekday(text: str, field: str) -> int:
    if text.isdigit() and int(text) <= 7:
        return int(text)
    if text[:3] in _DAY_NAMES and len(text) == 3:
        return _DAY_NAMES.index(text)
    raise ValueError(f"weekday field {field!r}: {text!r} is not a day (0-7 or sun-sat)")


def schedule_trigger(schedule: str, zone: ZoneInfo) -> CronTrigger:
    """The crontab line as the trigger the scheduler fires on, in the digest's zone.

    Note: like APScheduler (unlike Vixie cron), a day-of-month and a weekday both restrict.
    """
    fields = schedule.split()
    if len(fields) != 5:
        raise ValueError(f"schedule must be a 5-field crontab line, not {schedule!r}")
    minute, hour, day, month, weekday = fields
    try:
        return CronTrigger(
            minute=minute,
            hour=hour,
            day=day,
            month=month,
            day_of_week=crontab_weekdays(weekday),
            timezone=zone,
        )
    except ValueError as error:
        raise ValueError(f"schedule {schedule!r}: {error}") from error


def latest_slot(trigger: CronTrigger, now: datetime) -> datetime | None:
    """The newest slot at or before `now`, in UTC (None if the schedule never fired in 5 years).

    A wall-clock time the autumn change repeats is one slot, its first occurrence: the
    scheduler fires twice, both runs find the same slot, and the second finds its issue built.
    """
    _require_aware(now)
    for lookback in _LOOKBACKS:
        found = _last_fire_between(trigger, now - lookback, now)
        if found is not None:
            return found
    return None


def _last_fire_between(trigger: CronTrigger, start: datetime, end: datetime) -> datetime | None:
    fire = trigger.get_next_fire_time(None, start)
    last: datetime | None = None
    seen_wall_times: set[datetime] = set()
    while fire is not None and fire <= end:
        wall = fire.replace(tzinfo=None)
        if wall not in seen_wall_times:
            seen_wall_times.add(wall)
            last = fire
        fire = trigger.get_next_fire_time(fire, fire)
    return _utc(last) if last is not None else None


def next_slot(trigger: CronTrigger, after: datetime) -> datetime | None:
    """The first slot strictly after `after`, in UTC."""
    _require_aware(after)
    fire = trigger.get_next_fire_time(None, after + timedelta(microseconds=1))
    return _utc(fire) if fire is not None else None


# --- send windows and lateness -------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SendWindow:
    """Local hours in which sending may happen; `closes` before `opens` runs over midnight."""

    opens: time
    closes: time

    def contains(self, local: time) -> bool:
        if self.opens < self.closes:
            return self.opens <= local < self.closes
        return local >= self.opens or local < self.closes


def parse_send_window(text: str) -> SendWindow:
    """'08:00-20:00' → SendWindow; '22:00-06:00' runs over midnight. ValueError, one line."""
    match = _WINDOW.match(text)
    if not match:
        raise ValueError(f'send_window must look like "08:00-20:00", not {text!r}')
    hours_and_minutes = [int(group) for group in match.groups()]
    for hour, minute in (hours_and_minutes[:2], hours_and_minutes[2:]):
        if hour > 24 or minute > 59 or (hour == 24 and minute):
            raise ValueError(f"send_window {text!r}: {hour:02d}:{minute:02d} is not a time of day")
    opens, closes = (time(h % 24, m) for h, m in (hours_and_minutes[:2], hours_and_minutes[2:]))
    if opens == closes:
        raise ValueError(f"send_window {text!r} opens and closes at once (leave it empty for any)")
    return SendWindow(opens, closes)


@dataclass(frozen=True, slots=True)
class SendRule:
    """A digest's sending constraints: how late is too late, and when it may send."""

    late_after: timedelta
    zone: ZoneInfo
    window: SendWindow | None = None


@dataclass(frozen=True, slots=True)
class SendDecision:
    """`send` now; `wait` until `at`; `hold`: too late to send unattended, an editor decides."""

    action: Literal["send", "wait", "hold"]
    reason: str = ""
    at: datetime | None = None


def in_window(rule: SendRule, now: datetime) -> bool:
    _require_aware(now)
    if rule.window is None:
        return True
    return rule.window.contains(now.astimezone(rule.zone).time().replace(tzinfo=None))


def next_window_open(rule: SendRule, now: datetime) -> datetime:
    """`now` when the window is open, else the next time it opens (UTC)."""
    if rule.window is None or in_window(rule, now):
        return now
    local = now.astimezone(rule.zone)
    for days in (0, 1):
        day = local.date() + timedelta(days=days)
        # A local opening time the spring change skips resolves to just after the change.
        opening = datetime.combine(day, rule.window.opens, tzinfo=rule.zone)
        if opening.astimezone(now.tzinfo) > now:
            return _utc(opening)
    raise AssertionError("a window opens within a day")  # pragma: no cover


def is_late(rule: SendRule, meant: datetime, now: datetime) -> bool:
    return now - meant > rule.late_after


def _late_reason(rule: SendRule, meant: datetime, now: datetime, what: str) -> str:
    hours = (now - meant).total_seconds() / 3600
    limit = rule.late_after.total_seconds() / 3600
    return (
        f"late: {what} {_utc(meant):%Y-%m-%d %H:%M} UTC was {hours:.1f} h ago "
        f"(late_after = {limit:g} h); left for an editor"
    )


def slot_decision(rule: SendRule, slot: datetime, now: datetime) -> SendDecision:
    """What an auto-approved issue of `slot` does at `now`."""
    _require_aware(slot)
    _require_aware(now)
    if is_late(rule, slot, now):
        return SendDecision("hold", _late_reason(rule, slot, now, "its slot"))
    if not in_window(rule, now):
        opens = next_window_open(rule, now)
        return SendDecision(
            "wait", f"outside the send window; goes at {opens:%Y-%m-%d %H:%M} UTC", opens
        )
    return SendDecision("send")


@dataclass(frozen=True, slots=True)
class ApprovedIssue:
    """An approved issue waiting to go: at `send_after` (UTC), or at once when None.

    `approved_at`: when it was approved (None for issues approved before that was recorded).
    """

    issue_id: int
    digest: str
    send_after: datetime | None
    approved_at: datetime | None = None


def due_decision(
    rule: SendRule,
    send_after: datetime | None,
    now: datetime,
    approved_at: datetime | None = None,
) -> SendDecision:
    """What an approved issue does at `now`.

    Lateness counts from the first moment it could have gone: the later of `send_after` and
    the approval (approved Monday to go at once, the scheduler down till Thursday: late), or
    the window's opening after that.
    """
    _require_aware(now)
    if send_after is not None and send_after > now:
        return SendDecision("wait", f"goes at {_utc(send_after):%Y-%m-%d %H:%M} UTC", send_after)
    known = [moment for moment in (send_after, approved_at) if moment is not None]
    if known:
        meant = next_window_open(rule, max(known))
        if is_late(rule, meant, now):
            what = "its send time" if send_after is not None else "its approval"
            return SendDecision("hold", _late_reason(rule, meant, now, what))
    if not in_window(rule, now):
        opens = next_window_open(rule, now)
        return SendDecision(
            "wait", f"outside the send window; goes at {opens:%Y-%m-%d %H:%M} UTC", opens
        )
    return SendDecision("send")


def due_issues(
    approved: Sequence[ApprovedIssue], rules: dict[str, SendRule], now: datetime
) -> list[tuple[ApprovedIssue, SendDecision]]:
    """Each approved issue of a configured digest with what it does now (send, wait or hold)."""
    return [
        (issue, due_decision(rules[issue.digest], issue.send_after, now, issue.approved_at))
        for issue in approved
        if issue.digest in rules
    ]


def _require_aware(moment: datetime) -> None:
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError(f"time must be timezone-aware, got {moment.isoformat()}")


def _utc(moment: datetime) -> datetime:
    return moment.astimezone(UTC)
