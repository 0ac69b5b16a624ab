"""When a schedule runs: its times in its own time zone, and which due runs fire after downtime.

Pure functions over timestamps (seconds since the epoch), so tests drive them with any clock.
Cron expressions are read by croniter in the schedule's IANA zone (zoneinfo), so a daily 09:00
stays 09:00 local across a daylight-saving change. On the night the clocks go forward, a time that
does not exist runs at the first minute after the gap; on the night they go back, a schedule with
fixed hours runs once, at the first of the two repeated times.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

from croniter import croniter

MAX_RUNS_PER_CHECK = 20_000  # a bound on the runs looked at in one check (7 days of a per-minute cron)
MAX_DROPPED_COUNTED = 1000


@dataclass
class Due:
    """What a check finds: runs to fire now (scheduled time, seconds late or None when on time),
    and how many missed runs were skipped by the catch-up policy or dropped as too old."""

    fire: list[tuple[float, float | None]] = field(default_factory=list)
    skipped: int = 0
    dropped: list[float] = field(default_factory=list)


def cron_times(expression: str, timezone: str, after: float) -> Iterator[float]:
    """The run times of `expression` in `timezone` strictly after `after`, in order."""
    zone = ZoneInfo(timezone)
    fixed_hours = "*" not in expression.split()[1] if len(expression.split()) >= 5 else False
    it = croniter(expression, datetime.fromtimestamp(after, zone))
    while True:
        when: datetime = it.get_next(datetime)
        if fixed_hours and when.fold == 1 and when.replace(fold=0).utcoffset() != when.utcoffset():
            continue  # the second of two repeated wall times when the clocks go back
        yield when.timestamp()


def next_run(cron: str | None, at: float | None, timezone: str, after: float) -> float | None:
    """The next time the schedule runs after `after`, or None (a one-shot already past)."""
    if cron:
        return next(cron_times(cron, timezone, after))
    return at if at is not None and at > after else None


def due_runs(cron: str | None, at: float | None, timezone: str, cursor: float, now: float, *,
             catch_up: str, grace: float, max_missed_age: float) -> Due:
    """The runs scheduled in (cursor, now]. A run more than `grace` seconds late is missed: a missed
    one-shot fires once (late); missed cron runs follow `catch_up` (none: skipped; once: the latest
    fires, unless an on-time run fires; all: each fires). A run older than `max_missed_age` is dropped."""
    due = Due()
    if not cron:
        if at is not None and cursor < at <= now:
            late = now - at
            if late > max_missed_age:
                due.dropped.append(at)
            else:
                due.fire.append((at, late if late > grace else None))
        return due
    horizon = now - max_missed_age
    if cursor < horizon:  # runs too old to fire: counted (up to a bound) for the log
        for when in cron_times(cron, timezone, cursor):
            if when > horizon or len(due.dropped) >= MAX_DROPPED_COUNTED:
                break
            due.dropped.append(when)
    times: list[float] = []
    for when in cron_times(cron, timezone, max(cursor, horizon)):
        if when > now or len(times) >= MAX_RUNS_PER_CHECK:
            break
        times.append(when)
    on_time = [t for t in times if now - t <= grace]
    missed = [t for t in times if now - t > grace]
    if catch_up == "all":
        due.fire = [(t, now - t) for t in missed]
    elif catch_up == "once" and missed and not on_time:
        due.fire = [(missed[-1], now - missed[-1])]
    due.skipped = len(missed) - len(due.fire)
    due.fire += [(t, None) for t in on_time]
    return due


def late_text(seconds: float) -> str:
    """A lateness for people and the main agent, e.g. `1h`, `2h 5m`, `10d 3h`, `45s`."""
    s = int(seconds)
    days, hours, minutes = s // 86400, s % 86400 // 3600, s % 3600 // 60
    parts = [f"{days}d" if days else "", f"{hours}h" if hours else "", f"{minutes}m" if minutes and not days else ""]
    text = " ".join(p for p in parts if p)
    return text or f"{s}s"


def iso(ts: float, timezone: str = "UTC") -> str:
    """A timestamp as ISO 8601 in the given zone."""
    return datetime.fromtimestamp(ts, ZoneInfo(timezone) if timezone != "UTC" else UTC).isoformat(timespec="seconds")
