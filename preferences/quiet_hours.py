"""Quiet hours: a daily window of the recipient's local wall-clock time in which nothing is sent.

Pure time logic (no models, no database), evaluated with the standard library's ``zoneinfo`` on
the system's IANA tz database.

A window is resolved into real instants for each local day it starts on, instead of comparing
wall-clock times, so the answer stays right on daylight-saving days:

- a window boundary that does not exist that day (the spring-forward gap, e.g. 02:30 in
  America/New_York on 2026-03-08) falls on the first valid instant after the gap (03:00 EDT);
- a boundary that happens twice (the fall-back fold, e.g. 01:30 on 2026-11-01) is its first
  occurrence (``fold=0``), the moment the recipient's clock first shows that time — the same rule
  for start and end keeps every window one unbroken stretch of time. After the end, the repeated
  hour that reads "inside" the window again is not quiet: that day's window has already ended;
- a window that starts inside a fold does not reopen when the clock turns back, so a
  01:30–06:00 window is quiet from the first 01:30 until 06:00, through the repeated hour.
"""
import math
import re
import zoneinfo
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta, tzinfo

_CLOCK = re.compile(r"([0-9]{1,2}):([0-9]{2})")  # ASCII digits: \d would also take "２２:００"


@dataclass(frozen=True, slots=True, kw_only=True)
class QuietHours:
    """A daily window ``[start, end)`` of local wall-clock time.

    ``start > end`` runs over midnight (22:00–08:00 is quiet from 22:00 until 08:00 the next
    morning); ``start == end`` is an empty window: no quiet hours at all (not a 24-hour one).
    """

    start: time
    end: time

    def __post_init__(self):
        for name in ("start", "end"):
            value = getattr(self, name)
            if not isinstance(value, time):
                raise TypeError(f"quiet hours {name} must be a datetime.time, not {type(value).__name__}")
            if value.tzinfo is not None:
                raise ValueError(f"quiet hours {name} must be a local wall-clock time without tzinfo")

    @property
    def empty(self) -> bool:
        return self.start == self.end

    @property
    def overnight(self) -> bool:
        return self.start > self.end


def quiet_hours_parse(*, start: str, end: str) -> QuietHours | None:
    """Window from two "HH:MM" strings (24-hour clock, "8:00" also accepted).

    None when quiet hours are off: both strings blank, or start equal to end. One blank and one
    set is an error, so a half-filled form is not silently taken as "off".
    """
    start, end = (start or "").strip(), (end or "").strip()
    if not start and not end:
        return None
    if not start or not end:
        missing = "start" if not start else "end"
        raise ValueError(f"quiet hours {missing} is missing: give both start and end, or neither")
    window = QuietHours(start=_clock_parse(start, name="start"), end=_clock_parse(end, name="end"))
    return None if window.empty else window


def _clock_parse(value: str, *, name: str) -> time:
    match = _CLOCK.fullmatch(value)
    if not match:
        raise ValueError(f"quiet hours {name} {value!r} is not a time in HH:MM form, e.g. 22:00")
    hour, minute = int(match[1]), int(match[2])
    if hour > 23:
        raise ValueError(f"quiet hours {name} {value!r}: the hour must be between 00 and 23")
    if minute > 59:
        raise ValueError(f"quiet hours {name} {value!r}: the minutes must be between 00 and 59")
    return time(hour, minute)


def quiet_until(*, window: QuietHours, tz: str, now: datetime) -> datetime | None:
    """When the window holding ``now`` ends (aware, UTC) — the first moment sending is allowed
    again — or None if ``now`` is outside quiet hours.

    ``tz`` is the recipient's IANA zone name; "" means UTC. ``now`` must be aware (any zone).
    """
    zone = _zone(tz)
    if now.tzinfo is None or now.utcoffset() is None:
        raise ValueError("now must be an aware datetime")
    if window.empty:
        return None
    now = now.astimezone(UTC)
    today = now.astimezone(zone).date()
    # The window holding now started yesterday or today (local), or "tomorrow" should a clock
    # turn back across midnight after that window has already begun.
    for day in (today + timedelta(days=offset) for offset in (-1, 0, 1)):
        start, end = _occurrence(window, day, zone)
        if start <= now < end:
            return _merged_end(window, day, end, zone)
    return None


def _merged_end(window: QuietHours, day: date, end: datetime, zone: tzinfo) -> datetime:
    """Extend ``end`` while the next day's window starts the moment this one ends.

    Only a gap can do that (end 02:30 and start 02:45 both land on 03:00 on a spring-forward
    day); returning the first end would allow sending for no time at all.
    """
    for _ in range(3):
        day += timedelta(days=1)
        next_start, next_end = _occurrence(window, day, zone)
        if next_start > end:
            break
        end = max(end, next_end)
    return end


def _occurrence(window: QuietHours, day: date, zone: tzinfo) -> tuple[datetime, datetime]:
    """The UTC instants of the window that starts on local ``day``; start == end when it
    lies wholly in a gap and so does not happen that day."""
    end_day = day + timedelta(days=1) if window.overnight else day
    return _instant(day, window.start, zone), _instant(end_day, window.end, zone)


def _instant(day: date, clock: time, zone: tzinfo) -> datetime:
    """The UTC instant at which local ``day`` ``clock`` happens, first occurrence in a fold,
    first valid instant after the gap when the clock skips it."""
    wall = datetime.combine(day, clock)
    instant = wall.replace(tzinfo=zone).astimezone(UTC)  # fold=0: the earlier of two in a fold
    if instant.astimezone(zone).replace(tzinfo=None) == wall:
        return instant
    return _gap_end(wall, zone)


def _gap_end(wall: datetime, zone: tzinfo) -> datetime:
    """First instant whose local time is at or after ``wall``, which lies in a gap.

    zoneinfo does not expose transition times; the two readings of ``wall`` (old and new offset)
    bracket the transition, and tz transitions fall on whole seconds, so bisect the seconds.
    """
    readings = [wall.replace(tzinfo=zone, fold=fold).timestamp() for fold in (0, 1)]
    before, after = math.floor(min(readings)), math.ceil(max(readings))  # local < wall, >= wall
    while after - before > 1:
        middle = (before + after) // 2
        if datetime.fromtimestamp(middle, zone).replace(tzinfo=None) >= wall:
            after = middle
        else:
            before = middle
    return datetime.fromtimestamp(after, UTC)


def _zone(tz: str) -> tzinfo:
    if not tz:
        return UTC
    try:
        return zoneinfo.ZoneInfo(tz)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError, OSError):  # OSError: a directory, "America"
        raise ValueError(f"unknown time zone {tz!r}: expected an IANA name such as 'Asia/Shanghai'") from None


def quiet_hours_describe(*, window: QuietHours, tz: str) -> str:
    """For explanations: "quiet hours 22:00–08:00 Asia/Shanghai"."""
    if window.empty:
        return "no quiet hours"
    return f"quiet hours {_clock_format(window.start)}–{_clock_format(window.end)} {tz or 'UTC'}"


def _clock_format(clock: time) -> str:
    return clock.strftime("%H:%M:%S" if clock.second or clock.microsecond else "%H:%M")
