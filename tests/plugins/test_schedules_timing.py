"""The schedules plugin's fire times, as pure functions of fixed instants: cron in a time zone (DST transitions
included), every_s aligned on the epoch, and what catch_up does with fire times missed while no driver ran."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from abstractruntime_schedules.timing import (InvalidScheduleError, due_fires, fire_time_text, fire_times_after,
                                              latest_fire_at_or_before, make_timing, next_fire_after)

UTC = timezone.utc


def _z(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def _texts(times):
    return [fire_time_text(t) for t in times]


def test_every_s_is_aligned_on_the_epoch_and_ignores_the_time_zone():
    timing = make_timing(every_s=300, timezone="Europe/Paris")
    after, until = _z("2026-01-01T12:07:30Z"), _z("2026-01-01T12:25:00Z")
    assert _texts(fire_times_after(timing, after, until=until, limit=10)) == [
        "2026-01-01T12:10:00Z", "2026-01-01T12:15:00Z", "2026-01-01T12:20:00Z", "2026-01-01T12:25:00Z"]
    assert fire_time_text(latest_fire_at_or_before(timing, _z("2026-01-01T12:14:59.9Z"))) == "2026-01-01T12:10:00Z"
    assert fire_time_text(latest_fire_at_or_before(timing, _z("2026-01-01T12:15:00Z"))) == "2026-01-01T12:15:00Z"
    # across the Paris DST change an interval stays an interval of absolute time
    spring = fire_times_after(make_timing(every_s=3600, timezone="Europe/Paris"), _z("2026-03-28T23:30:00Z"),
                              until=_z("2026-03-29T03:00:00Z"), limit=10)
    assert _texts(spring) == ["2026-03-29T00:00:00Z", "2026-03-29T01:00:00Z", "2026-03-29T02:00:00Z",
                              "2026-03-29T03:00:00Z"]


def test_cron_is_evaluated_in_the_schedules_time_zone():
    timing = make_timing(cron="0 9 * * *", timezone="America/New_York")
    # 09:00 in New York is 14:00Z in winter and 13:00Z once DST starts (2026-03-08)
    fires = fire_times_after(timing, _z("2026-03-06T00:00:00Z"), until=_z("2026-03-10T00:00:00Z"), limit=10)
    assert _texts(fires) == ["2026-03-06T14:00:00Z", "2026-03-07T14:00:00Z", "2026-03-08T13:00:00Z",
                             "2026-03-09T13:00:00Z"]
    utc = make_timing(cron="*/5 * * * *")
    assert fire_time_text(next_fire_after(utc, _z("2026-01-01T12:05:00Z"))) == "2026-01-01T12:10:00Z"
    assert fire_time_text(latest_fire_at_or_before(utc, _z("2026-01-01T12:05:00Z"))) == "2026-01-01T12:05:00Z"
    assert fire_time_text(latest_fire_at_or_before(utc, _z("2026-01-01T12:04:59Z"))) == "2026-01-01T12:00:00Z"


def test_a_daily_job_in_the_skipped_hour_runs_once_right_after_the_spring_forward_jump():
    # Europe/Paris, 2026-03-29: 02:00 local jumps to 03:00, so 02:30 does not exist that day
    timing = make_timing(cron="30 2 * * *", timezone="Europe/Paris")
    fires = fire_times_after(timing, _z("2026-03-27T12:00:00Z"), until=_z("2026-03-31T00:00:00Z"), limit=10)
    assert _texts(fires) == ["2026-03-28T01:30:00Z",   # 02:30 CET
                             "2026-03-29T01:00:00Z",   # 03:00 CEST: right after the jump, once
                             "2026-03-30T00:30:00Z"]   # 02:30 CEST


def test_a_daily_job_in_the_repeated_hour_runs_once_at_the_fall_back():
    # Europe/Paris, 2026-10-25: 03:00 local falls back to 02:00, so 02:30 happens twice that night
    timing = make_timing(cron="30 2 * * *", timezone="Europe/Paris")
    fires = fire_times_after(timing, _z("2026-10-24T12:00:00Z"), until=_z("2026-10-27T00:00:00Z"), limit=10)
    assert _texts(fires) == ["2026-10-25T00:30:00Z", "2026-10-26T01:30:00Z"]


def test_an_hourly_job_follows_elapsed_time_across_both_transitions():
    hourly = make_timing(cron="0 * * * *", timezone="Europe/Paris")
    spring = fire_times_after(hourly, _z("2026-03-28T23:30:00Z"), until=_z("2026-03-29T02:30:00Z"), limit=10)
    assert _texts(spring) == ["2026-03-29T00:00:00Z", "2026-03-29T01:00:00Z", "2026-03-29T02:00:00Z"]
    fall = fire_times_after(hourly, _z("2026-10-24T23:30:00Z"), until=_z("2026-10-25T02:30:00Z"), limit=10)
    assert _texts(fall) == ["2026-10-25T00:00:00Z", "2026-10-25T01:00:00Z", "2026-10-25T02:00:00Z"]  # 02:00 twice
    # the latest fire at or before an instant agrees with the forward iteration at the transition
    assert fire_time_text(latest_fire_at_or_before(hourly, _z("2026-10-25T01:30:00Z"))) == "2026-10-25T01:00:00Z"


def test_catch_up_none_one_all():
    timing = make_timing(every_s=600)
    cursor, now = _z("2026-01-01T10:00:00Z"), _z("2026-01-01T11:02:00Z")  # 6 fire times missed, the last 2 min ago
    assert due_fires(timing, cursor=cursor, now=now, catch_up="none", grace_s=60) == ([], _z("2026-01-01T11:00:00Z"))
    assert due_fires(timing, cursor=cursor, now=now, catch_up="none", grace_s=300) == (
        [_z("2026-01-01T11:00:00Z")], _z("2026-01-01T11:00:00Z"))
    assert due_fires(timing, cursor=cursor, now=now, catch_up="one", grace_s=60) == (
        [_z("2026-01-01T11:00:00Z")], _z("2026-01-01T11:00:00Z"))
    fires, new_cursor = due_fires(timing, cursor=cursor, now=now, catch_up="all", grace_s=60)
    assert _texts(fires) == [f"2026-01-01T{h}:00Z" for h in ("10:10", "10:20", "10:30", "10:40", "10:50", "11:00")]
    assert new_cursor == fires[-1]
    # at most ``limit`` per call: the cursor stops at the last one returned, the rest come next time
    first, c1 = due_fires(timing, cursor=cursor, now=now, catch_up="all", grace_s=60, limit=4)
    rest, c2 = due_fires(timing, cursor=c1, now=now, catch_up="all", grace_s=60, limit=4)
    assert first + rest == fires and c2 == fires[-1]
    # nothing due: nothing, cursor unchanged
    assert due_fires(timing, cursor=fires[-1], now=now, catch_up="all", grace_s=60) == ([], fires[-1])


@pytest.mark.parametrize("kwargs, message", [
    ({}, "exactly one of cron"),
    ({"cron": "* * * * *", "every_s": 5}, "exactly one of cron"),
    ({"cron": "0 0 * * * *"}, "five-field"),
    ({"cron": "61 * * * *"}, "Invalid cron expression"),
    ({"every_s": 0.5}, "whole number of seconds"),
    ({"every_s": True}, "whole number of seconds"),
    ({"every_s": 60, "timezone": "Mars/Olympus"}, "Unknown timezone"),
])
def test_bad_timings_are_refused_with_what_to_do(kwargs, message):
    with pytest.raises(InvalidScheduleError, match=message) as exc:
        make_timing(**kwargs)
    assert isinstance(exc.value, ValueError)
