"""Quiet hours: when a window holds "now" and the exact instant it ends, in the recipient's zone,
across daylight-saving gaps and folds, on both hemispheres and on odd offsets.

Times are written as ISO strings with the local UTC offset the recipient's clock shows, so each
case reads as wall-clock time and still names one exact instant; every result is also checked
as the exact local time (with its offset) it corresponds to.
"""
from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest

from preferences.quiet_hours import QuietHours, quiet_hours_describe, quiet_hours_parse, quiet_until


def window(start: str, end: str) -> QuietHours:
    return QuietHours(start=time.fromisoformat(start), end=time.fromisoformat(end))


def until(tz: str, start: str, end: str, now: str) -> str | None:
    """quiet_until as the local ISO time (with offset) the recipient's clock shows, or None."""
    result = quiet_until(window=window(start, end), tz=tz, now=datetime.fromisoformat(now).astimezone(UTC))
    if result is None:
        return None
    assert result.tzinfo is UTC
    return result.astimezone(ZoneInfo(tz) if tz else UTC).isoformat()


def case(tz, start, end, now, expected, id):
    return pytest.param(tz, start, end, now, expected, id=id)


SHANGHAI = [
    case("Asia/Shanghai", "22:00", "08:00", "2026-06-15T23:30+08:00", "2026-06-16T08:00:00+08:00", "23:30 next 08:00"),
    case("Asia/Shanghai", "22:00", "08:00", "2026-06-16T07:59+08:00", "2026-06-16T08:00:00+08:00", "07:59"),
    case("Asia/Shanghai", "22:00", "08:00", "2026-06-16T07:59:59.999999+08:00", "2026-06-16T08:00:00+08:00",
         "last microsecond"),
    case("Asia/Shanghai", "22:00", "08:00", "2026-06-16T00:00+08:00", "2026-06-16T08:00:00+08:00", "midnight"),
    case("Asia/Shanghai", "22:00", "08:00", "2026-06-16T08:00+08:00", None, "08:00 end is open"),
    case("Asia/Shanghai", "22:00", "08:00", "2026-06-15T21:59+08:00", None, "21:59"),
    case("Asia/Shanghai", "22:00", "08:00", "2026-06-15T22:00+08:00", "2026-06-16T08:00:00+08:00", "22:00 start"),
    case("Asia/Shanghai", "22:00", "08:00", "2026-06-15T12:00+08:00", None, "noon"),
    case("Asia/Shanghai", "22:00", "08:00", "2026-12-31T23:00+08:00", "2027-01-01T08:00:00+08:00", "new year"),
]
SAME_DAY = [
    case("Asia/Shanghai", "12:00", "13:00", "2026-06-15T11:59:59+08:00", None, "before"),
    case("Asia/Shanghai", "12:00", "13:00", "2026-06-15T12:00+08:00", "2026-06-15T13:00:00+08:00", "start"),
    case("Asia/Shanghai", "12:00", "13:00", "2026-06-15T12:30+08:00", "2026-06-15T13:00:00+08:00", "inside"),
    case("Asia/Shanghai", "12:00", "13:00", "2026-06-15T13:00+08:00", None, "end"),
    case("Asia/Shanghai", "12:00", "13:00", "2026-06-15T23:00+08:00", None, "night"),
    case("", "00:00", "06:00", "2026-01-01T00:00+00:00", "2026-01-01T06:00:00+00:00", "from midnight"),
    case("", "00:00", "06:00", "2025-12-31T23:59:59+00:00", None, "just before midnight"),
    case("", "22:00", "00:00", "2026-01-01T23:00+00:00", "2026-01-02T00:00:00+00:00", "until midnight"),
    case("", "22:00", "00:00", "2026-01-02T00:00+00:00", None, "at midnight"),
]
NEW_YORK_OVERNIGHT = [  # 22:00-08:00 around 2026-03-08 (EST -5 -> EDT -4) and 2026-11-01 (EDT -> EST)
    case("America/New_York", "22:00", "08:00", "2026-03-06T23:00-05:00", "2026-03-07T08:00:00-05:00", "day before"),
    case("America/New_York", "22:00", "08:00", "2026-03-07T23:00-05:00", "2026-03-08T08:00:00-04:00", "spring night"),
    case("America/New_York", "22:00", "08:00", "2026-03-08T01:59:59-05:00", "2026-03-08T08:00:00-04:00",
         "before the gap"),
    case("America/New_York", "22:00", "08:00", "2026-03-08T03:00-04:00", "2026-03-08T08:00:00-04:00", "after gap"),
    case("America/New_York", "22:00", "08:00", "2026-03-08T08:00-04:00", None, "spring 08:00"),
    case("America/New_York", "22:00", "08:00", "2026-03-08T22:00-04:00", "2026-03-09T08:00:00-04:00", "day after"),
    case("America/New_York", "22:00", "08:00", "2026-10-31T23:00-04:00", "2026-11-01T08:00:00-05:00", "fall night"),
    case("America/New_York", "22:00", "08:00", "2026-11-01T01:30-04:00", "2026-11-01T08:00:00-05:00", "1st 01:30"),
    case("America/New_York", "22:00", "08:00", "2026-11-01T01:30-05:00", "2026-11-01T08:00:00-05:00", "2nd 01:30"),
    case("America/New_York", "22:00", "08:00", "2026-11-01T07:59-05:00", "2026-11-01T08:00:00-05:00", "fall 07:59"),
    case("America/New_York", "22:00", "08:00", "2026-11-01T08:00-05:00", None, "fall 08:00"),
]
NEW_YORK_EDGES = [
    # The end 02:30 does not exist on 2026-03-08: the window ends when the clock jumps to 03:00.
    case("America/New_York", "22:00", "02:30", "2026-03-07T23:00-05:00", "2026-03-08T03:00:00-04:00", "end in gap"),
    case("America/New_York", "22:00", "02:30", "2026-03-08T01:59:59-05:00", "2026-03-08T03:00:00-04:00",
         "end in gap, last second"),
    case("America/New_York", "22:00", "02:30", "2026-03-08T03:00-04:00", None, "end in gap, after"),
    case("America/New_York", "22:00", "02:30", "2026-03-07T02:00-05:00", "2026-03-07T02:30:00-05:00", "end, normal"),
    # The end 01:30 happens twice on 2026-11-01: the first one ends the window; the repeated
    # hour does not reopen it although its wall clock reads "inside".
    case("America/New_York", "22:00", "01:30", "2026-10-31T23:00-04:00", "2026-11-01T01:30:00-04:00", "end in fold"),
    case("America/New_York", "22:00", "01:30", "2026-11-01T01:29-04:00", "2026-11-01T01:30:00-04:00",
         "end in fold, 01:29"),
    case("America/New_York", "22:00", "01:30", "2026-11-01T01:30-04:00", None, "end in fold, 1st 01:30"),
    case("America/New_York", "22:00", "01:30", "2026-11-01T01:00-05:00", None, "end in fold, repeated 01:00"),
    case("America/New_York", "22:00", "01:30", "2026-11-01T01:45-05:00", None, "end in fold, repeated 01:45"),
    # The start 02:30 does not exist on 2026-03-08: the window opens when the clock jumps to 03:00.
    case("America/New_York", "02:30", "06:00", "2026-03-08T01:59:59-05:00", None, "start in gap, before"),
    case("America/New_York", "02:30", "06:00", "2026-03-08T03:00-04:00", "2026-03-08T06:00:00-04:00", "start in gap"),
    case("America/New_York", "02:30", "06:00", "2026-03-09T02:29-04:00", None, "start, next day before"),
    case("America/New_York", "02:30", "06:00", "2026-03-09T02:30-04:00", "2026-03-09T06:00:00-04:00", "start, next"),
    # The start 01:30 happens twice: the window opens at the first and stays shut through the
    # repeated hour, when the wall clock (01:15) reads "before the start".
    case("America/New_York", "01:30", "06:00", "2026-11-01T01:29-04:00", None, "start in fold, before"),
    case("America/New_York", "01:30", "06:00", "2026-11-01T01:30-04:00", "2026-11-01T06:00:00-05:00", "start in fold"),
    case("America/New_York", "01:30", "06:00", "2026-11-01T01:15-05:00", "2026-11-01T06:00:00-05:00",
         "start in fold, repeated 01:15"),
    # A window wholly inside the gap does not happen that day.
    case("America/New_York", "02:10", "02:50", "2026-03-08T03:00-04:00", None, "window in gap"),
    case("America/New_York", "02:10", "02:50", "2026-03-07T02:20-05:00", "2026-03-07T02:50:00-05:00", "gap, before"),
    case("America/New_York", "02:10", "02:50", "2026-03-09T02:20-04:00", "2026-03-09T02:50:00-04:00", "gap, after"),
    # 02:45-02:30 leaves 15 minutes a day to send; on the gap day both ends land on 03:00, so
    # there is no such quarter hour and the quiet runs on to the next day's 02:30.
    case("America/New_York", "02:45", "02:30", "2026-03-07T02:29-05:00", "2026-03-07T02:30:00-05:00", "merge, normal"),
    case("America/New_York", "02:45", "02:30", "2026-03-07T02:40-05:00", None, "merge, the open quarter"),
    case("America/New_York", "02:45", "02:30", "2026-03-08T01:00-05:00", "2026-03-09T02:30:00-04:00", "merge"),
]
ELSEWHERE = [
    # Sydney: summer time (AEDT +11) ends 2026-04-05 03:00 -> 02:00, starts 2026-10-04 02:00 -> 03:00.
    case("Australia/Sydney", "22:00", "08:00", "2026-04-03T23:00+11:00", "2026-04-04T08:00:00+11:00", "syd before"),
    case("Australia/Sydney", "22:00", "08:00", "2026-04-04T23:00+11:00", "2026-04-05T08:00:00+10:00", "syd april"),
    case("Australia/Sydney", "22:00", "08:00", "2026-04-05T02:30+10:00", "2026-04-05T08:00:00+10:00", "syd fold"),
    case("Australia/Sydney", "22:00", "08:00", "2026-10-03T23:00+10:00", "2026-10-04T08:00:00+11:00", "syd october"),
    case("Australia/Sydney", "22:00", "02:30", "2026-10-03T23:00+10:00", "2026-10-04T03:00:00+11:00", "syd gap end"),
    # Lord Howe moves its clocks by 30 minutes (+10:30 <-> +11:00), the gap is 02:00-02:30.
    case("Australia/Lord_Howe", "22:00", "02:15", "2026-10-04T01:00+10:30", "2026-10-04T02:30:00+11:00",
         "lord howe gap end"),
    # London: GMT -> BST 2026-03-29 01:00 -> 02:00; BST -> GMT 2026-10-25 02:00 -> 01:00.
    case("Europe/London", "00:30", "01:30", "2026-03-29T00:45+00:00", "2026-03-29T02:00:00+01:00", "london gap end"),
    case("Europe/London", "00:30", "01:30", "2026-10-25T01:15+01:00", "2026-10-25T01:30:00+01:00", "london fold"),
    case("Europe/London", "00:30", "01:30", "2026-10-25T01:15+00:00", None, "london repeated hour"),
    # Santiago changes clocks at midnight: 2026-09-06 00:00 -> 01:00 and 2026-04-05 00:00 -> 04-04 23:00.
    case("America/Santiago", "00:00", "06:00", "2026-09-05T23:59-04:00", None, "scl midnight gap, before"),
    case("America/Santiago", "00:00", "06:00", "2026-09-06T01:00-03:00", "2026-09-06T06:00:00-03:00",
         "scl start at skipped midnight"),
    case("America/Santiago", "20:00", "00:00", "2026-09-05T23:30-04:00", "2026-09-06T01:00:00-03:00",
         "scl end at skipped midnight"),
    case("America/Santiago", "22:00", "23:30", "2026-04-04T23:10-03:00", "2026-04-04T23:30:00-03:00", "scl fold"),
    case("America/Santiago", "22:00", "23:30", "2026-04-04T23:10-04:00", None, "scl repeated hour"),
    # Samoa skipped 2011-12-30 entirely (-10 -> +14): that night's quiet runs into the next one.
    case("Pacific/Apia", "22:00", "08:00", "2011-12-29T23:00-10:00", "2011-12-31T08:00:00+14:00", "apia lost day"),
    # Half- and three-quarter-hour offsets.
    case("Asia/Kathmandu", "22:00", "08:00", "2026-06-15T23:00+05:45", "2026-06-16T08:00:00+05:45", "kathmandu"),
    case("Asia/Kathmandu", "22:00", "08:00", "2026-06-16T08:00+05:45", None, "kathmandu end"),
    case("Asia/Kolkata", "12:00", "13:00", "2026-06-15T12:59+05:30", "2026-06-15T13:00:00+05:30", "kolkata"),
    case("Asia/Kolkata", "12:00", "13:00", "2026-06-15T11:59+05:30", None, "kolkata before"),
]


@pytest.mark.parametrize(("tz", "start", "end", "now", "expected"),
                         SHANGHAI + SAME_DAY + NEW_YORK_OVERNIGHT + NEW_YORK_EDGES + ELSEWHERE)
def test_quiet_until(tz, start, end, now, expected):
    assert until(tz, start, end, now) == expected


@pytest.mark.parametrize(("tz", "start", "end", "now", "expected_utc"), [
    ("Asia/Shanghai", "22:00", "08:00", "2026-06-15T15:30Z", "2026-06-16T00:00Z"),
    ("America/New_York", "22:00", "08:00", "2026-03-07T04:00Z", "2026-03-07T13:00Z"),  # EST: 08:00 is 13:00Z
    ("America/New_York", "22:00", "08:00", "2026-03-08T04:00Z", "2026-03-08T12:00Z"),  # EDT: an hour earlier
    ("America/New_York", "22:00", "08:00", "2026-10-31T04:00Z", "2026-10-31T12:00Z"),  # EDT
    ("America/New_York", "22:00", "08:00", "2026-11-01T04:00Z", "2026-11-01T13:00Z"),  # EST: an hour later
    ("America/New_York", "22:00", "02:30", "2026-03-08T04:00Z", "2026-03-08T07:00Z"),  # the instant of the jump
    ("America/New_York", "22:00", "01:30", "2026-11-01T04:00Z", "2026-11-01T05:30Z"),  # first 01:30, EDT
    ("Asia/Kathmandu", "22:00", "08:00", "2026-06-15T17:15Z", "2026-06-16T02:15Z"),
    ("Asia/Kolkata", "12:00", "13:00", "2026-06-15T07:29Z", "2026-06-15T07:30Z"),
])
def test_quiet_until_utc_instant(tz, start, end, now, expected_utc):
    result = quiet_until(window=window(start, end), tz=tz, now=datetime.fromisoformat(now))
    assert result == datetime.fromisoformat(expected_utc)
    assert result.tzinfo is UTC


def test_window_over_a_clock_change_lasts_an_hour_less_or_more():
    quiet = window("22:00", "08:00")
    zone = ZoneInfo("America/New_York")

    def length(evening):
        start = evening.replace(tzinfo=zone)
        return quiet_until(window=quiet, tz="America/New_York", now=start) - start

    assert length(datetime(2026, 3, 6, 22)) == timedelta(hours=10)
    assert length(datetime(2026, 3, 7, 22)) == timedelta(hours=9)
    assert length(datetime(2026, 10, 31, 22)) == timedelta(hours=11)


def test_now_in_any_zone_gives_the_same_instant():
    quiet = window("22:00", "08:00")
    instant = datetime(2026, 6, 15, 15, 30, tzinfo=UTC)
    expected = datetime(2026, 6, 16, 0, 0, tzinfo=UTC)
    for zone in ("Asia/Shanghai", "America/Los_Angeles", "Asia/Kathmandu"):
        assert quiet_until(window=quiet, tz="Asia/Shanghai", now=instant.astimezone(ZoneInfo(zone))) == expected


@pytest.mark.parametrize(("tz", "start", "end", "first_day"), [
    ("America/New_York", "22:00", "08:00", datetime(2026, 3, 6, tzinfo=UTC)),
    ("America/New_York", "01:30", "02:30", datetime(2026, 10, 30, tzinfo=UTC)),
    ("America/New_York", "02:45", "02:30", datetime(2026, 3, 6, tzinfo=UTC)),
    ("Australia/Sydney", "02:15", "02:45", datetime(2026, 4, 3, tzinfo=UTC)),
    ("Australia/Lord_Howe", "23:00", "02:15", datetime(2026, 10, 2, tzinfo=UTC)),
    ("America/Santiago", "23:30", "00:30", datetime(2026, 4, 3, tzinfo=UTC)),
    ("America/Santiago", "23:30", "00:30", datetime(2026, 9, 4, tzinfo=UTC)),
])
def test_every_minute_over_a_change_is_consistent(tz, start, end, first_day):
    """Minute by minute over three days around a change: the returned instant is later than
    now, allows sending, and the whole stretch up to it gives the same answer."""
    quiet = window(start, end)
    seen_quiet = seen_open = 0
    for minute in range(3 * 24 * 60):
        now = first_day + timedelta(minutes=minute)
        result = quiet_until(window=quiet, tz=tz, now=now)
        if result is None:
            seen_open += 1
            continue
        seen_quiet += 1
        assert result > now
        assert quiet_until(window=quiet, tz=tz, now=result) is None
        assert quiet_until(window=quiet, tz=tz, now=result - timedelta(microseconds=1)) == result
        assert quiet_until(window=quiet, tz=tz, now=now + (result - now) / 2) == result
    assert seen_quiet and seen_open


@pytest.mark.parametrize("tz", ["", "Asia/Shanghai", "America/New_York", "Asia/Kathmandu"])
@pytest.mark.parametrize("clock", ["00:00", "02:30", "08:00", "22:00"])
def test_start_equal_to_end_is_no_quiet_hours(tz, clock):
    quiet = window(clock, clock)
    assert quiet.empty
    for hours in range(0, 48 * 4):
        now = datetime(2026, 3, 7, tzinfo=UTC) + timedelta(minutes=15 * hours)
        assert quiet_until(window=quiet, tz=tz, now=now) is None


def test_empty_tz_is_utc():
    quiet = window("22:00", "08:00")
    assert quiet_until(window=quiet, tz="", now=datetime(2026, 6, 15, 23, tzinfo=UTC)) \
        == datetime(2026, 6, 16, 8, tzinfo=UTC)
    assert quiet_until(window=quiet, tz="", now=datetime(2026, 6, 15, 21, tzinfo=UTC)) is None


@pytest.mark.parametrize("tz", ["Mars/Olympus_Mons", "asia/shanghai", "Asia/Shanghai ", "America", "../etc/passwd",
                                "/etc/localtime"])
def test_unknown_time_zone_is_a_value_error_naming_it(tz):
    with pytest.raises(ValueError, match=f"unknown time zone '{tz}'"):
        quiet_until(window=window("22:00", "08:00"), tz=tz, now=datetime(2026, 6, 15, tzinfo=UTC))


def test_unknown_time_zone_is_reported_even_for_an_empty_window():
    with pytest.raises(ValueError, match="Mars/Olympus_Mons"):
        quiet_until(window=window("08:00", "08:00"), tz="Mars/Olympus_Mons", now=datetime(2026, 6, 15, tzinfo=UTC))


def test_naive_now_is_refused():
    with pytest.raises(ValueError, match="aware"):
        quiet_until(window=window("22:00", "08:00"), tz="Asia/Shanghai", now=datetime(2026, 6, 15, 23))


@pytest.mark.parametrize(("start", "end", "expected"), [
    ("22:00", "08:00", QuietHours(start=time(22), end=time(8))),
    ("12:00", "13:30", QuietHours(start=time(12), end=time(13, 30))),
    ("8:05", "9:00", QuietHours(start=time(8, 5), end=time(9))),
    (" 22:00 ", "08:00\n", QuietHours(start=time(22), end=time(8))),
    ("00:00", "23:59", QuietHours(start=time(0), end=time(23, 59))),
    ("", "", None),
    ("  ", "", None),
    ("22:00", "22:00", None),
])
def test_parse(start, end, expected):
    assert quiet_hours_parse(start=start, end=end) == expected


@pytest.mark.parametrize(("start", "end", "message"), [
    ("25:00", "08:00", r"quiet hours start '25:00': the hour must be between 00 and 23"),
    ("22:00", "24:00", r"quiet hours end '24:00': the hour must be between 00 and 23"),
    ("22:00", "08:60", r"quiet hours end '08:60': the minutes must be between 00 and 59"),
    ("noon", "13:00", r"quiet hours start 'noon' is not a time in HH:MM form"),
    ("2200", "08:00", r"quiet hours start '2200' is not a time in HH:MM form"),
    ("22:00:00", "08:00", r"quiet hours start '22:00:00' is not a time in HH:MM form"),
    ("22:0", "08:00", r"quiet hours start '22:0' is not a time in HH:MM form"),
    ("-1:00", "08:00", r"quiet hours start '-1:00' is not a time in HH:MM form"),
    ("２２:００", "08:00", r"quiet hours start '２２:００' is not a time in HH:MM form"),
    ("", "08:00", r"quiet hours start is missing"),
    ("22:00", " ", r"quiet hours end is missing"),
])
def test_parse_errors_say_which_field_and_why(start, end, message):
    with pytest.raises(ValueError, match=message):
        quiet_hours_parse(start=start, end=end)


def test_window_takes_local_times_by_keyword():
    with pytest.raises(TypeError):
        QuietHours(time(22), time(8))
    with pytest.raises(TypeError, match="start must be a datetime.time"):
        QuietHours(start="22:00", end=time(8))
    with pytest.raises(ValueError, match="end must be a local wall-clock time"):
        QuietHours(start=time(22), end=time(8, tzinfo=UTC))
    assert window("22:00", "08:00").overnight
    assert not window("12:00", "13:00").overnight


@pytest.mark.parametrize(("start", "end", "tz", "expected"), [
    ("22:00", "08:00", "Asia/Shanghai", "quiet hours 22:00–08:00 Asia/Shanghai"),
    ("12:00", "13:30", "", "quiet hours 12:00–13:30 UTC"),
    ("22:00:30", "08:00", "Europe/London", "quiet hours 22:00:30–08:00 Europe/London"),
    ("08:00", "08:00", "Asia/Shanghai", "no quiet hours"),
])
def test_describe(start, end, tz, expected):
    assert quiet_hours_describe(window=window(start, end), tz=tz) == expected
