"""When a schedule fires: pure functions of a :class:`Timing` and fixed instants (no clock, no store).

* ``cron`` -- a standard five-field expression evaluated by `cronsim <https://pypi.org/project/cronsim/>`_ in the
  schedule's IANA ``timezone`` (``zoneinfo``), with Debian cron's rules at DST transitions: a job whose local time
  is skipped (spring forward) runs once right after the jump, a job whose local time repeats (fall back) runs once;
  jobs every N minutes or hours follow elapsed time.
* ``every_s`` -- every N whole seconds of absolute time, aligned on the Unix epoch (``every_s=3600`` fires on the
  hour, UTC): no DST effect, the same instants for every process.

Fire times are aware UTC datetimes with whole seconds; :func:`fire_time_text` is their one text form.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import List, Optional, Tuple
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from attrs import frozen
from cronsim import CronSim, CronSimError

from abstractruntime.errors import ValidationError

from .choices import CATCH_UPS

UTC = timezone.utc
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class InvalidScheduleError(ValidationError):
    """A schedule definition is not acceptable (the message says which field and why); nothing was stored."""


@frozen
class Timing:
    """A checked ``cron`` or ``every_s`` (exactly one) and the IANA ``timezone`` cron is evaluated in."""

    cron: Optional[str] = None
    every_s: Optional[int] = None
    timezone: str = "UTC"

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    def describe(self) -> str:
        return f"cron {self.cron!r} ({self.timezone})" if self.cron else f"every {self.every_s} s"


def make_timing(*, cron: Optional[str] = None, every_s: Optional[float] = None, timezone: Optional[str] = None) -> Timing:
    """Check and normalise a schedule's timing; :class:`InvalidScheduleError` says what is wrong."""
    if (cron is None) == (every_s is None):
        raise InvalidScheduleError("Give exactly one of cron= (e.g. '*/5 * * * *') or every_s= (whole seconds >= 1)")
    tz = "UTC" if timezone is None else timezone
    if not isinstance(tz, str) or not tz.strip():
        raise InvalidScheduleError(f"timezone must be an IANA time zone name such as 'Europe/Paris', got {tz!r}")
    try:
        ZoneInfo(tz.strip())
    except (ZoneInfoNotFoundError, ValueError, TypeError):
        raise InvalidScheduleError(f"Unknown timezone {tz!r}: use an IANA name such as 'UTC', 'Europe/Paris' or "
                                   f"'America/New_York'") from None
    tz = tz.strip()
    if cron is not None:
        if not isinstance(cron, str) or len(cron.split()) != 5:
            raise InvalidScheduleError(f"cron must be a five-field expression 'minute hour day-of-month month "
                                       f"day-of-week', e.g. '*/5 * * * *'; got {cron!r}")
        expr = " ".join(cron.split())
        try:
            next(CronSim(expr, datetime(2000, 1, 1, tzinfo=UTC)))
        except (CronSimError, StopIteration) as exc:
            raise InvalidScheduleError(f"Invalid cron expression {cron!r}: {exc}") from None
        return Timing(cron=expr, timezone=tz)
    if isinstance(every_s, bool) or not isinstance(every_s, (int, float)) or every_s != every_s \
            or every_s < 1 or float(every_s) != int(every_s):
        raise InvalidScheduleError(f"every_s must be a whole number of seconds >= 1, got {every_s!r}")
    return Timing(every_s=int(every_s), timezone=tz)


def fire_time_text(when: datetime) -> str:
    """``2026-03-29T01:00:00Z``: the canonical text of a fire time (run ids and ledgers are derived from it)."""
    return when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _whole(at: datetime) -> datetime:
    return at.astimezone(UTC).replace(microsecond=0)


def _epoch_s(at: datetime) -> int:
    return int((_whole(at) - _EPOCH).total_seconds())


def latest_fire_at_or_before(timing: Timing, at: datetime) -> Optional[datetime]:
    """The last fire time ``<= at`` (None if the expression never fired before ``at``)."""
    if timing.every_s is not None:
        return _EPOCH + timedelta(seconds=(_epoch_s(at) // timing.every_s) * timing.every_s)
    start = (_whole(at) + timedelta(seconds=1)).astimezone(timing.zone)  # reverse iteration is strictly before
    try:
        return next(CronSim(timing.cron, start, reverse=True)).astimezone(UTC)  # type: ignore[arg-type]
    except StopIteration:  # pragma: no cover - cronsim iterates without end
        return None


def fire_times_after(timing: Timing, after: datetime, *, until: datetime, limit: int) -> List[datetime]:
    """Fire times ``t`` with ``after < t <= until``, oldest first, at most ``limit``."""
    out: List[datetime] = []
    if timing.every_s is not None:
        k = _epoch_s(after) // timing.every_s + 1
        while len(out) < limit:
            t = _EPOCH + timedelta(seconds=k * timing.every_s)
            if t > until:
                break
            out.append(t)
            k += 1
        return out
    it = CronSim(timing.cron, _whole(after).astimezone(timing.zone))  # type: ignore[arg-type]
    while len(out) < limit:
        t = next(it).astimezone(UTC)
        if t > until:
            break
        out.append(t)
    return out


def next_fire_after(timing: Timing, after: datetime) -> datetime:
    """The first fire time strictly after ``after``."""
    return fire_times_after(timing, after, until=datetime.max.replace(tzinfo=UTC), limit=1)[0]


def due_fires(timing: Timing, *, cursor: datetime, now: datetime, catch_up: str, grace_s: float,
              limit: int = 1000) -> Tuple[List[datetime], datetime]:
    """What is due at ``now`` for a schedule whose fire times up to ``cursor`` are handled: the fire times to start
    runs for, oldest first, and the new cursor. Of the due fire times ``cursor < t <= now``:

    * ``catch_up="none"``: only the latest, and only if it is at most ``grace_s`` old (fire times missed while no
      scheduler ran are dropped);
    * ``"one"``: only the latest, however old (one run makes up for everything missed);
    * ``"all"``: every one, oldest first (at most ``limit`` now; the cursor stops at the last returned, so the rest
      come next time).
    """
    if catch_up not in CATCH_UPS:
        raise InvalidScheduleError(f"catch_up must be one of {', '.join(CATCH_UPS)}, got {catch_up!r}")
    latest = latest_fire_at_or_before(timing, now)
    if latest is None or latest <= cursor:
        return [], cursor
    if catch_up == "all":
        fires = fire_times_after(timing, cursor, until=now, limit=max(1, limit))
        return fires, (fires[-1] if fires else cursor)
    if catch_up == "none" and (now - latest).total_seconds() > grace_s:
        return [], latest
    return [latest], latest


__all__ = ["Timing", "make_timing", "fire_time_text", "latest_fire_at_or_before", "fire_times_after",
           "next_fire_after", "due_fires", "InvalidScheduleError", "CATCH_UPS", "UTC"]
