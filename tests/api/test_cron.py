"""Cron schedules: robfig/cron's parse errors, field syntax, and next fire times,
including daylight-saving transitions in a time zone."""

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest

from nanokube.api import cron

NY = ZoneInfo("America/New_York")
BERLIN = ZoneInfo("Europe/Berlin")


def utc(
    year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0
) -> datetime:
    return datetime(year, month, day, hour, minute, second, tzinfo=UTC)


def nexts(spec: str, after: datetime, n: int, tz=UTC) -> list[datetime]:
    sched = cron.parse(spec, tz)
    out = []
    t: datetime | None = after
    for _ in range(n):
        assert t is not None
        t = sched.next(t)
        assert t is not None
        out.append(t)
    return out


# --- parsing -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("", "empty spec string"),
        ("* * * *", "expected exactly 5 fields, found 4: [* * * *]"),
        ("* * * * * *", "expected exactly 5 fields, found 6: [* * * * * *]"),
        ("60 * * * *", "end of range (60) above maximum (59): 60"),
        ("* 24 * * *", "end of range (24) above maximum (23): 24"),
        ("* * 0 * *", "beginning of range (0) below minimum (1): 0"),
        ("* * * 13 *", "end of range (13) above maximum (12): 13"),
        ("* * * * 7", "end of range (7) above maximum (6): 7"),
        ("5-2 * * * *", "beginning of range (5) beyond end of range (2): 5-2"),
        ("*/0 * * * *", "step of range should be a positive number: */0"),
        ("1-2-3 * * * *", "too many hyphens: 1-2-3"),
        ("*/2/3 * * * *", "too many slashes: */2/3"),
        ("x * * * *", 'failed to parse int from x: strconv.Atoi: parsing "x": invalid syntax'),
        ("@fortnightly", "unrecognized descriptor: @fortnightly"),
        ("@every x", 'failed to parse duration @every x: time: invalid duration "x"'),
        (
            "TZ=Nowhere/Land * * * * *",
            "provided bad location Nowhere/Land: unknown time zone Nowhere/Land",
        ),
    ],
)
def test_parse_errors_carry_robfig_messages(spec: str, message: str) -> None:
    with pytest.raises(cron.CronError) as err:
        cron.parse(spec)
    assert str(err.value) == message


def test_field_syntax_sets_the_right_bits() -> None:
    s = cron.parse("0,30 9-17/4 */10 jan,JUL mon-fri")
    assert isinstance(s, cron.Schedule)
    assert s.minute == (1 << 0) | (1 << 30)
    assert s.hour == (1 << 9) | (1 << 13) | (1 << 17)
    assert s.dom == (1 << 1) | (1 << 11) | (1 << 21) | (1 << 31)  # a stepped star is no star
    assert s.month == (1 << 1) | (1 << 7)
    assert s.dow == sum(1 << d for d in range(1, 6))


def test_n_slash_step_runs_to_the_maximum() -> None:
    s = cron.parse("50/5 * * * *")
    assert isinstance(s, cron.Schedule)
    assert s.minute == (1 << 50) | (1 << 55)


def test_descriptors_equal_their_five_field_forms() -> None:
    assert cron.parse("@hourly") == cron.parse("0 * * * *")
    assert cron.parse("@daily") == cron.parse("@midnight") == cron.parse("0 0 * * *")
    assert cron.parse("@weekly") == cron.parse("0 0 * * 0")
    assert cron.parse("@monthly") == cron.parse("0 0 1 * *")
    assert cron.parse("@yearly") == cron.parse("@annually") == cron.parse("0 0 1 1 *")


def test_tz_prefix_selects_the_zone() -> None:
    s = cron.parse("CRON_TZ=America/New_York 0 9 * * *")
    assert isinstance(s, cron.Schedule)
    assert s.tz == NY
    assert s.next(utc(2024, 6, 1)) == utc(2024, 6, 1, 13)


def test_go_durations() -> None:
    assert cron.parse_duration("1h30m") == 5400
    assert cron.parse_duration("1.5h") == 5400
    assert cron.parse_duration("250ms") == 0.25
    with pytest.raises(cron.CronError, match="missing unit"):
        cron.parse_duration("10")


# --- next fire times ------------------------------------------------------------


def test_every_minute_and_every_five() -> None:
    assert nexts("* * * * *", utc(2024, 1, 1, 0, 0, 30), 2) == [
        utc(2024, 1, 1, 0, 1),
        utc(2024, 1, 1, 0, 2),
    ]
    assert nexts("*/5 * * * *", utc(2024, 1, 1, 0, 5), 2) == [
        utc(2024, 1, 1, 0, 10),
        utc(2024, 1, 1, 0, 15),
    ]


def test_next_is_strictly_after() -> None:
    assert cron.parse("0 * * * *").next(utc(2024, 1, 1, 5)) == utc(2024, 1, 1, 6)


def test_rolls_over_days_months_and_years() -> None:
    assert nexts("0 0 1 1 *", utc(2024, 3, 5), 1) == [utc(2025, 1, 1)]
    assert nexts("0 12 31 * *", utc(2024, 4, 1), 2) == [utc(2024, 5, 31, 12), utc(2024, 7, 31, 12)]
    assert nexts("0 0 29 2 *", utc(2024, 3, 1), 1) == [utc(2028, 2, 29)]


def test_impossible_schedule_has_no_next() -> None:
    assert cron.parse("0 0 30 2 *").next(utc(2024, 1, 1)) is None


def test_day_of_month_or_day_of_week() -> None:
    # Both restricted: either may match (the 13th, or any Friday).
    assert nexts("0 0 13 * 5", utc(2024, 9, 1), 3) == [
        utc(2024, 9, 6),
        utc(2024, 9, 13),
        utc(2024, 9, 20),
    ]
    # One is a star: both must match, so only Fridays.
    assert nexts("0 0 * * fri", utc(2024, 9, 1), 2) == [utc(2024, 9, 6), utc(2024, 9, 13)]


def test_every_descriptor() -> None:
    assert cron.parse("@every 1h30m").next(utc(2024, 1, 1, 0, 0, 0)) == utc(2024, 1, 1, 1, 30)
    assert cron.parse("@every 10ms") == cron.Every(1)


def test_time_zone_follows_the_wall_clock_across_dst() -> None:
    # 09:00 in Berlin is 08:00 UTC in winter and 07:00 UTC in summer (DST on 31 March 2024).
    got = nexts("0 9 * * *", utc(2024, 3, 29, 12), 4, BERLIN)
    assert got == [
        utc(2024, 3, 30, 8),
        utc(2024, 3, 31, 7),
        utc(2024, 4, 1, 7),
        utc(2024, 4, 2, 7),
    ]
    assert got[1].tzinfo is UTC  # the answer is in the caller's zone


def test_spring_forward_skips_a_time_that_does_not_exist() -> None:
    # New York clocks jump from 02:00 to 03:00 on 10 March 2024: no 02:30 that day.
    got = nexts("30 2 * * *", datetime(2024, 3, 9, 12, tzinfo=NY), 2, NY)
    assert got == [utc(2024, 3, 11, 6, 30), utc(2024, 3, 12, 6, 30)]
    assert got[0].astimezone(NY).strftime("%d %H:%M %Z") == "11 02:30 EDT"


def test_fall_back_fires_twice_in_the_repeated_hour() -> None:
    # New York clocks go from 02:00 EDT back to 01:00 EST on 3 November 2024: 01:30
    # happens at 05:30 UTC and again at 06:30 UTC, and robfig fires at both.
    got = nexts("30 1 * * *", utc(2024, 11, 2, 12), 3, NY)
    assert got == [utc(2024, 11, 3, 5, 30), utc(2024, 11, 3, 6, 30), utc(2024, 11, 4, 6, 30)]


def test_hourly_through_spring_forward_in_new_york() -> None:
    got = nexts("0 * * * *", utc(2024, 3, 10, 5, 30), 3, NY)  # 00:30 EST
    assert [t.astimezone(NY).strftime("%H:%M %Z") for t in got] == [
        "01:00 EST",
        "03:00 EDT",
        "04:00 EDT",
    ]


def test_most_recent_counts_missed_runs() -> None:
    sched = cron.parse("*/10 * * * *")
    last, count = cron.most_recent(sched, utc(2024, 1, 1, 0, 0), utc(2024, 1, 1, 0, 35))
    assert (last, count) == (utc(2024, 1, 1, 0, 30), 3)
    assert cron.most_recent(sched, utc(2024, 1, 1, 0, 31), utc(2024, 1, 1, 0, 39)) == (None, 0)
    _, capped = cron.most_recent(cron.parse("* * * * *"), utc(2024, 1, 1), utc(2024, 1, 2), limit=5)
    assert capped == 6


def test_load_zone_rejects_unknown_zones() -> None:
    assert cron.load_zone("UTC") is UTC
    with pytest.raises(cron.CronError, match="unknown time zone Mars/Olympus"):
        cron.load_zone("Mars/Olympus")
