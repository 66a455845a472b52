"""Slots, the late cut-off and send windows: digest/slots.py, no clock but the one passed in."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest

from digest.slots import (
    ApprovedIssue,
    SendRule,
    SendWindow,
    crontab_weekdays,
    due_decision,
    due_issues,
    in_window,
    latest_slot,
    next_slot,
    next_window_open,
    parse_send_window,
    schedule_trigger,
    slot_decision,
)

BERLIN = ZoneInfo("Europe/Berlin")


def utc(*parts: int) -> datetime:
    return datetime(*parts, tzinfo=UTC)


def rule(window: str = "", late_after: float = 12) -> SendRule:
    return SendRule(
        late_after=timedelta(hours=late_after),
        zone=BERLIN,
        window=parse_send_window(window) if window else None,
    )


# --- schedule ------------------------------------------------------------------------------


def test_crontab_monday_fires_on_monday_not_tuesday():
    # CronTrigger.from_crontab would read the 1 as Tuesday (APScheduler counts Monday as 0).
    trigger = schedule_trigger("0 8 * * 1", BERLIN)
    fire = next_slot(trigger, utc(2026, 11, 22, 12))  # a Sunday
    assert fire is not None
    local = fire.astimezone(BERLIN)
    assert (local.strftime("%A"), local.hour, local.minute) == ("Monday", 8, 0)


@pytest.mark.parametrize(
    ("field", "days"),
    [
        ("*", "*"),
        ("0", "sun"),
        ("7", "sun"),
        ("1-5", "mon,tue,wed,thu,fri"),
        ("5-7", "sun,fri,sat"),
        ("*/2", "sun,tue,thu,sat"),
        ("mon,wed", "mon,wed"),
        ("SAT", "sat"),
    ],
)
def test_crontab_weekdays_become_names(field: str, days: str):
    assert crontab_weekdays(field) == days


@pytest.mark.parametrize("field", ["8", "5-1", "funday", "*/0"])
def test_a_bad_weekday_field_is_one_line(field: str):
    with pytest.raises(ValueError, match="weekday field") as caught:
        crontab_weekdays(field)
    assert "\n" not in str(caught.value)


def test_a_weekly_slot_stays_at_8_local_across_the_spring_change():
    trigger = schedule_trigger("0 8 * * mon", BERLIN)
    # Monday 23 March: CET (UTC+1); Monday 30 March: CEST (UTC+2).
    assert latest_slot(trigger, utc(2026, 3, 25, 12)) == utc(2026, 3, 23, 7)
    assert latest_slot(trigger, utc(2026, 4, 1, 12)) == utc(2026, 3, 30, 6)


def test_a_slot_the_spring_change_skips_still_happens_once_just_after_it():
    trigger = schedule_trigger("30 2 * * *", BERLIN)
    # 29 March 2026: 02:00 CET jumps to 03:00 CEST, so 02:30 never happens that day.
    assert latest_slot(trigger, utc(2026, 3, 29, 12)) == utc(2026, 3, 29, 1, 30)
    assert latest_slot(trigger, utc(2026, 3, 29, 1, 29)) == utc(2026, 3, 28, 1, 30)
    assert latest_slot(trigger, utc(2026, 3, 30, 12)) == utc(2026, 3, 30, 0, 30)


def test_a_slot_the_autumn_change_repeats_is_one_slot_its_first_time():
    trigger = schedule_trigger("30 2 * * *", BERLIN)
    # 25 October 2026: 02:30 happens at 00:30 UTC (CEST) and again at 01:30 UTC (CET).
    first = utc(2026, 10, 25, 0, 30)
    assert latest_slot(trigger, utc(2026, 10, 25, 0, 45)) == first
    assert latest_slot(trigger, utc(2026, 10, 25, 1, 45)) == first
    assert latest_slot(trigger, utc(2026, 10, 25, 23)) == first


def test_latest_slot_is_now_when_now_is_a_slot_and_finds_rare_ones():
    assert latest_slot(schedule_trigger("*/5 * * * *", BERLIN), utc(2026, 1, 1, 10, 5)) == utc(
        2026, 1, 1, 10, 5
    )
    # Once a year: 1 July 09:00 Berlin.
    yearly = schedule_trigger("0 9 1 7 *", BERLIN)
    assert latest_slot(yearly, utc(2027, 6, 30)) == utc(2026, 7, 1, 7)


def test_latest_slot_refuses_a_naive_time():
    with pytest.raises(ValueError, match="timezone-aware"):
        latest_slot(schedule_trigger("0 8 * * *", BERLIN), datetime(2026, 1, 1))


# --- windows -------------------------------------------------------------------------------


def test_send_window_parses_and_contains():
    window = parse_send_window("08:00-20:00")
    assert window == SendWindow(time(8), time(20))
    assert window.contains(time(8)) and window.contains(time(19, 59))
    assert not window.contains(time(20)) and not window.contains(time(7, 59))


def test_a_send_window_over_midnight():
    window = parse_send_window("22:00-06:00")
    assert window.contains(time(23)) and window.contains(time(0)) and window.contains(time(5))
    assert not window.contains(time(6)) and not window.contains(time(12))
    assert parse_send_window("20:00-24:00").contains(time(23, 59))


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("8-20", "must look like"),
        ("08:00-08:00", "opens and closes at once"),
        ("25:00-03:00", "not a time"),
    ],
)
def test_a_bad_send_window_is_one_line(text: str, problem: str):
    with pytest.raises(ValueError, match=problem):
        parse_send_window(text)


def test_window_is_read_in_the_digest_zone_and_opens_next_morning():
    evening = rule("08:00-20:00")
    # 19:30 UTC is 20:30 in Berlin in November: closed; it opens at 08:00 Berlin = 07:00 UTC.
    assert in_window(evening, utc(2026, 11, 25, 18, 30))
    assert not in_window(evening, utc(2026, 11, 25, 19, 30))
    assert next_window_open(evening, utc(2026, 11, 25, 19, 30)) == utc(2026, 11, 26, 7)
    # Before opening on the same day.
    assert next_window_open(evening, utc(2026, 11, 26, 5)) == utc(2026, 11, 26, 7)
    # Open: now.
    assert next_window_open(evening, utc(2026, 11, 26, 9)) == utc(2026, 11, 26, 9)


def test_a_window_over_midnight_opens_the_same_evening():
    night = rule("22:00-06:00")
    assert next_window_open(night, utc(2026, 11, 25, 12)) == utc(2026, 11, 25, 21)
    assert in_window(night, utc(2026, 11, 26, 2))


# --- decisions -----------------------------------------------------------------------------


def test_a_punctual_or_slightly_late_slot_sends():
    slot = utc(2026, 11, 23, 7)
    assert slot_decision(rule(), slot, slot).action == "send"
    assert slot_decision(rule(), slot, slot + timedelta(hours=12)).action == "send"


def test_a_slot_older_than_late_after_is_held_and_says_why():
    slot = utc(2026, 11, 23, 7)
    decision = slot_decision(rule(), slot, slot + timedelta(hours=12, minutes=1))
    assert decision.action == "hold"
    assert decision.reason == (
        "late: its slot 2026-11-23 07:00 UTC was 12.0 h ago (late_after = 12 h); left for an editor"
    )


def test_a_slot_outside_the_window_waits_for_it_to_open():
    slot = utc(2026, 11, 23, 21)  # 22:00 Berlin
    decision = slot_decision(rule("08:00-20:00"), slot, slot)
    assert decision.action == "wait"
    assert decision.at == utc(2026, 11, 24, 7)
    assert "outside the send window" in decision.reason


def test_an_approved_issue_waits_for_its_send_time_then_goes():
    at = utc(2026, 11, 24, 7)
    assert due_decision(rule(), at, at - timedelta(minutes=1)).action == "wait"
    assert due_decision(rule(), at, at).action == "send"
    assert due_decision(rule(), None, at).action == "send"


def test_an_approved_issue_long_past_its_send_time_is_held():
    at = utc(2026, 11, 24, 7)
    decision = due_decision(rule(late_after=6), at, at + timedelta(hours=7))
    assert decision.action == "hold"
    assert "its send time 2026-11-24 07:00 UTC was 7.0 h ago" in decision.reason


def test_lateness_counts_from_the_window_opening_after_the_send_time():
    # Meant for 23:00 Berlin, the window opens at 08:00: at 09:00 it is one hour late, not ten.
    evening = rule("08:00-20:00", late_after=2)
    send_after = utc(2026, 11, 24, 22)
    assert due_decision(evening, send_after, utc(2026, 11, 25, 8)).action == "send"
    assert due_decision(evening, send_after, utc(2026, 11, 25, 10)).action == "hold"


def test_an_approved_issue_outside_its_window_waits_for_it():
    evening = rule("08:00-20:00")
    night = utc(2026, 11, 24, 23)
    decision = due_decision(evening, None, night)
    assert (decision.action, decision.at) == ("wait", utc(2026, 11, 25, 7))


def test_one_approved_to_go_at_once_is_late_counted_from_its_approval():
    monday, thursday = utc(2026, 11, 23, 9), utc(2026, 11, 26, 9)
    punctual = due_decision(rule(late_after=12), None, monday + timedelta(hours=11), monday)
    assert punctual.action == "send"
    decision = due_decision(rule(late_after=12), None, thursday, monday)
    assert decision.action == "hold"
    assert "its approval 2026-11-23 09:00 UTC was 72.0 h ago" in decision.reason
    # Approved after its send time had passed: the approval is when it could first go.
    late_approval = due_decision(rule(late_after=1), monday, thursday, thursday)
    assert late_approval.action == "send"
    # Approved before the approval time was recorded: nothing to count from.
    assert due_decision(rule(late_after=1), None, thursday).action == "send"


def test_due_issues_skips_digests_no_longer_configured():
    now = utc(2026, 11, 24, 12)
    approved = [
        ApprovedIssue(1, "weekly", None),
        ApprovedIssue(2, "gone", None),
        ApprovedIssue(3, "weekly", now + timedelta(hours=1)),
    ]
    decided = due_issues(approved, {"weekly": rule()}, now)
    assert [(issue.issue_id, d.action) for issue, d in decided] == [(1, "send"), (3, "wait")]
