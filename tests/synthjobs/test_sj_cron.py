"""Cron schedules: parsing, errors that name their field, next/latest due times, time zones and DST.

Due times are checked against hand-worked examples and, over windows around real DST transitions, against a
brute-force reference that walks every UTC minute.
"""

from __future__ import annotations

import pickle
import random
import time
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from synthjobs.rules.cron import CronError, CronSchedule, parse_cron


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


def local(zone: str, *args: int, fold: int = 0) -> datetime:
    """A wall-clock time in `zone`, as UTC (an ambiguous local time never equals one in another zone)."""
    return datetime(*args, tzinfo=ZoneInfo(zone), fold=fold).astimezone(UTC)


def successive(schedule: CronSchedule, after: datetime, count: int) -> list[datetime]:
    found = []
    for _ in range(count):
        after = schedule.next_after(after)
        found.append(after)
    return found


# Parsing


@pytest.mark.parametrize(
    ("minute_field", "expected"),
    [
        ("*", tuple(range(60))),
        ("7", (7,)),
        ("07", (7,)),
        ("10-13", (10, 11, 12, 13)),
        ("*/15", (0, 15, 30, 45)),
        ("10-30/10", (10, 20, 30)),
        ("5,1,3", (1, 3, 5)),
        ("0-4/2,50-59/5,7", (0, 2, 4, 7, 50, 55)),
        ("*/90", (0,)),
    ],
)
def test_parse_accepts_numbers_ranges_steps_and_lists(minute_field: str, expected: tuple[int, ...]) -> None:
    assert CronSchedule.parse(f"{minute_field} * * * *").minutes == expected


def test_parse_reads_every_field_at_its_position() -> None:
    schedule = CronSchedule.parse("1 2 3 4 5")
    assert (schedule.minutes, schedule.hours, schedule.days_of_month) == ((1,), (2,), (3,))
    assert (schedule.months, schedule.days_of_week) == ((4,), (5,))


def test_month_and_weekday_names_are_case_insensitive() -> None:
    schedule = CronSchedule.parse("0 0 * JAN,Mar-may,dec Mon-FRI,sat")
    assert schedule.months == (1, 3, 4, 5, 12)
    assert schedule.days_of_week == (1, 2, 3, 4, 5, 6)


def test_sunday_is_both_zero_and_seven() -> None:
    assert CronSchedule.parse("0 0 * * 0").days_of_week == (0,)
    assert CronSchedule.parse("0 0 * * 7").days_of_week == (0,)
    assert CronSchedule.parse("0 0 * * sun").days_of_week == (0,)
    assert CronSchedule.parse("0 0 * * 5-7").days_of_week == (0, 5, 6)
    assert CronSchedule.parse("0 0 * * fri-sun").days_of_week == (0, 5, 6)
    assert CronSchedule.parse("0 0 * * *").days_of_week == tuple(range(7))


def test_sunday_zero_and_seven_fire_at_the_same_times() -> None:
    start = utc(2026, 5, 1)
    assert successive(CronSchedule.parse("0 12 * * 0"), start, 3) == successive(
        CronSchedule.parse("0 12 * * 7"), start, 3
    )
    assert CronSchedule.parse("0 12 * * 7").next_after(start) == utc(2026, 5, 3, 12)  # a Sunday


@pytest.mark.parametrize(
    ("macro", "expression"),
    [
        ("@hourly", "0 * * * *"),
        ("@daily", "0 0 * * *"),
        ("@midnight", "0 0 * * *"),
        ("@weekly", "0 0 * * 0"),
        ("@monthly", "0 0 1 * *"),
        ("@yearly", "0 0 1 1 *"),
        ("@annually", "0 0 1 1 *"),
        ("@DAILY", "0 0 * * *"),
    ],
)
def test_macros_expand_to_their_expressions(macro: str, expression: str) -> None:
    assert CronSchedule.parse(macro) == CronSchedule.parse(expression)
    assert CronSchedule.parse(macro).expression == expression


def test_expression_is_normalised_and_round_trips() -> None:
    schedule = CronSchedule.parse("  0   9\t* *  MON-Fri ", "Asia/Tokyo")
    assert schedule.expression == "0 9 * * mon-fri"
    assert schedule.describe() == "0 9 * * mon-fri (Asia/Tokyo)"
    assert CronSchedule.parse(schedule.expression, schedule.timezone) == schedule
    assert parse_cron("0 9 * * mon-fri", "Asia/Tokyo") == schedule
    assert pickle.loads(pickle.dumps(schedule)) == schedule


def test_schedule_is_frozen() -> None:
    schedule = CronSchedule.parse("* * * * *")
    with pytest.raises(AttributeError):
        schedule.expression = "0 0 * * *"  # type: ignore[misc]


# Errors name the field and why


@pytest.mark.parametrize(
    ("expression", "field_name", "why"),
    [
        ("60 * * * *", "minute", "out of range"),
        ("* 24 * * *", "hour", "out of range"),
        ("* * 0 * *", "day of month", "out of range"),
        ("* * 32 * *", "day of month", "out of range"),
        ("* * * 13 *", "month", "out of range"),
        ("* * * 0 *", "month", "out of range"),
        ("* * * * 8", "day of week", "out of range"),
        ("*/0 * * * *", "minute", "step of 0"),
        ("* 1-5/0 * * *", "hour", "step of 0"),
        ("* * * */x *", "month", "not a positive number"),
        ("5-1 * * * *", "minute", "reversed"),
        ("* * * dec-jan *", "month", "reversed"),
        ("* * * * sat-mon", "day of week", "reversed"),
        ("1,,2 * * * *", "minute", "empty"),
        ("* * * * mon,", "day of week", "empty"),
        ("-1 * * * *", "minute", "missing number"),
        ("* 3- * * *", "hour", "missing number"),
        ("5/15 * * * *", "minute", "step needs"),
        ("* * * foo *", "month", "not a number or a month name"),
        ("* * * * jan", "day of week", "not a number or a day of week name"),
        ("* * * mon *", "month", "not a number or a month name"),
        ("* * * * monday", "day of week", "not a number"),
        ("x * * * *", "minute", "not a number"),
        ("\u0665 * * * *", "minute", "not a number"),  # an Arabic-Indic five
        ("1.5 * * * *", "minute", "not a number"),
        ("*-5 * * * *", "minute", "not a number"),
        ("* * * *", "expression", "expected 5 fields"),
        ("* * * * * *", "expression", "expected 5 fields"),
        ("", "expression", "expected 5 fields"),
        ("@reboot", "expression", "unknown macro"),
        ("0 0 31 2 *", "day of month", "no listed day"),
        ("0 0 30,31 feb *", "day of month", "no listed day"),
        ("0 0 31 4,6,9,11 *", "day of month", "no listed day"),
    ],
)
def test_invalid_expression_error_names_field_and_reason(expression: str, field_name: str, why: str) -> None:
    with pytest.raises(CronError) as raised:
        CronSchedule.parse(expression)
    assert raised.value.field == field_name
    assert str(raised.value).startswith(f"{field_name}: ")
    assert why in str(raised.value)


def test_cron_error_is_a_value_error_and_pickles() -> None:
    error = CronError("hour", "24 is out of range 0-23")
    assert isinstance(error, ValueError)
    copy = pickle.loads(pickle.dumps(error))
    assert (copy.field, str(copy)) == ("hour", "hour: 24 is out of range 0-23")


def test_expression_longer_than_200_characters_is_rejected() -> None:
    minutes = ",".join(str(m) for m in range(60))  # valid, but far too long once repeated
    with pytest.raises(CronError, match="expression: .*200"):
        CronSchedule.parse(f"{minutes},{minutes},{minutes} * * * *")
    with pytest.raises(CronError, match="200"):
        CronSchedule.parse("0 0 * * *" + " " * 192)  # 201 characters
    assert CronSchedule.parse("0 0 * * *" + " " * 191).expression == "0 0 * * *"  # 200 is fine


@pytest.mark.parametrize("zone", ["Mars/Olympus", "", "../etc/passwd", "/etc/localtime", "localtime", "utc"])
def test_unknown_time_zone_is_named_in_the_error(zone: str) -> None:
    with pytest.raises(CronError) as raised:
        CronSchedule.parse("0 0 * * *", zone)
    assert raised.value.field == "time zone"
    assert repr(zone) in str(raised.value)


def test_day_of_month_and_day_of_week_both_restricted_is_not_impossible() -> None:
    # 31 February never exists, but "or Monday" makes this a valid weekly-ish schedule (Vixie cron)
    schedule = CronSchedule.parse("0 0 31 2 mon")
    assert schedule.next_after(utc(2026, 1, 1)) == utc(2026, 2, 2)


# next_after


def test_next_after_is_strictly_after() -> None:
    schedule = CronSchedule.parse("*/15 * * * *")
    assert schedule.next_after(utc(2026, 5, 1, 10, 7)) == utc(2026, 5, 1, 10, 15)
    assert schedule.next_after(utc(2026, 5, 1, 10, 15)) == utc(2026, 5, 1, 10, 30)
    assert schedule.next_after(utc(2026, 5, 1, 10, 14, 59, 999999)) == utc(2026, 5, 1, 10, 15)
    assert schedule.next_after(utc(2026, 5, 1, 10, 15, 0, 1)) == utc(2026, 5, 1, 10, 30)


def test_next_after_returns_aware_utc_for_any_input_zone() -> None:
    after = datetime(2026, 5, 1, 15, 37, tzinfo=ZoneInfo("Asia/Kolkata"))  # 10:07 UTC
    due = CronSchedule.parse("*/15 * * * *").next_after(after)
    assert due == utc(2026, 5, 1, 10, 15)
    assert due.tzinfo is UTC


def test_next_after_rejects_naive_datetime() -> None:
    with pytest.raises(ValueError, match="aware"):
        CronSchedule.parse("* * * * *").next_after(datetime(2026, 5, 1))


def test_next_after_combined_fields() -> None:
    schedule = CronSchedule.parse("30 8-18/4 * * mon-fri")  # 08:30, 12:30, 16:30 on weekdays
    assert successive(schedule, utc(2026, 5, 1, 12, 30), 4) == [  # Friday 1 May 2026
        utc(2026, 5, 1, 16, 30),
        utc(2026, 5, 4, 8, 30),  # Monday
        utc(2026, 5, 4, 12, 30),
        utc(2026, 5, 4, 16, 30),
    ]


def test_next_after_with_month_names_skips_to_listed_months() -> None:
    schedule = CronSchedule.parse("0 6 1 jan,jul *")
    assert successive(schedule, utc(2026, 1, 1, 6), 3) == [
        utc(2026, 7, 1, 6),
        utc(2027, 1, 1, 6),
        utc(2027, 7, 1, 6),
    ]


def test_day_of_month_or_day_of_week_when_both_restricted() -> None:
    schedule = CronSchedule.parse("0 0 13 * fri")  # the 13th, and every Friday
    assert successive(schedule, utc(2026, 2, 1), 5) == [
        utc(2026, 2, 6),
        utc(2026, 2, 13),  # both a Friday and the 13th: once
        utc(2026, 2, 20),
        utc(2026, 2, 27),
        utc(2026, 3, 6),
    ]
    assert utc(2026, 4, 13) in CronSchedule.parse("0 0 13 * fri").due_times(utc(2026, 4, 1), utc(2026, 5, 1))


def test_star_prefixed_day_field_combines_with_and_like_vixie_cron() -> None:
    schedule = CronSchedule.parse("0 0 */2 * mon")  # Mondays on odd days of the month
    assert successive(schedule, utc(2026, 2, 1), 3) == [utc(2026, 2, 9), utc(2026, 2, 23), utc(2026, 3, 9)]


def test_only_day_of_week_restricted_fires_on_those_weekdays() -> None:
    due = CronSchedule.parse("0 0 * * sat,sun").due_times(utc(2026, 5, 1), utc(2026, 5, 11))
    assert due == [utc(2026, 5, 2), utc(2026, 5, 3), utc(2026, 5, 9), utc(2026, 5, 10)]


def test_leap_day_is_found_quickly_even_across_a_non_leap_century() -> None:
    schedule = CronSchedule.parse("0 0 29 2 *")
    started = time.perf_counter()
    assert schedule.next_after(utc(2026, 5, 1)) == utc(2028, 2, 29)
    assert schedule.next_after(utc(2096, 3, 1)) == utc(2104, 2, 29)  # 2100 is not a leap year
    assert time.perf_counter() - started < 0.5


def test_year_rollover() -> None:
    assert CronSchedule.parse("0 0 1 1 *").next_after(utc(2026, 12, 31, 23, 59)) == utc(2027, 1, 1)
    assert CronSchedule.parse("59 23 31 12 *").next_after(utc(2026, 12, 31, 23, 59)) == utc(
        2027, 12, 31, 23, 59
    )
    assert CronSchedule.parse("* * * * *").next_after(utc(2026, 12, 31, 23, 59, 30)) == utc(2027, 1, 1)


def test_no_due_time_before_the_end_of_datetime_range_raises_value_error() -> None:
    with pytest.raises(ValueError, match="no due time"):
        CronSchedule.parse("0 0 1 1 *").next_after(utc(9999, 6, 1))


def test_weekday_morning_in_tokyo_is_midnight_utc() -> None:
    schedule = CronSchedule.parse("0 9 * * mon-fri", "Asia/Tokyo")
    # Friday 1 May 2026, 12:00 UTC is already 21:00 in Tokyo: next is Monday 09:00 JST
    assert successive(schedule, utc(2026, 5, 1, 12), 2) == [utc(2026, 5, 4, 0), utc(2026, 5, 5, 0)]


def test_time_zone_decides_the_local_day_of_week() -> None:
    # Sunday 23:30 in Los Angeles is Monday 06:30 UTC (PDT, UTC-7)
    schedule = CronSchedule.parse("30 23 * * sun", "America/Los_Angeles")
    assert schedule.next_after(utc(2026, 5, 1)) == utc(2026, 5, 4, 6, 30)


# Daylight saving time


def test_spring_forward_gap_fires_once_at_the_end_of_the_gap_in_berlin() -> None:
    schedule = CronSchedule.parse("30 2 * * *", "Europe/Berlin")  # 02:00 -> 03:00 on 29 March 2026
    due = schedule.due_times(utc(2026, 3, 27, 12), utc(2026, 3, 31, 12))
    assert due == [
        local("Europe/Berlin", 2026, 3, 28, 2, 30),
        local("Europe/Berlin", 2026, 3, 29, 3, 0),  # 02:30 does not exist: once, at 03:00 CEST
        local("Europe/Berlin", 2026, 3, 30, 2, 30),
        local("Europe/Berlin", 2026, 3, 31, 2, 30),
    ]
    assert due[1] == utc(2026, 3, 29, 1, 0)


def test_spring_forward_gap_fires_once_in_new_york() -> None:
    schedule = CronSchedule.parse("30 2 * * *", "America/New_York")  # 02:00 -> 03:00 on 8 March 2026
    assert successive(schedule, utc(2026, 3, 7, 12), 2) == [utc(2026, 3, 8, 7, 0), utc(2026, 3, 9, 6, 30)]


def test_due_times_inside_the_gap_and_at_its_end_are_one_firing() -> None:
    schedule = CronSchedule.parse("*/15 * * * *", "Europe/Berlin")
    due = schedule.due_times(utc(2026, 3, 29, 0, 30), utc(2026, 3, 29, 1, 30))
    assert due == [
        utc(2026, 3, 29, 0, 45),
        utc(2026, 3, 29, 1, 0),
        utc(2026, 3, 29, 1, 15),
        utc(2026, 3, 29, 1, 30),
    ]


def test_half_hour_spring_forward_gap_fires_at_the_end_of_the_gap() -> None:
    schedule = CronSchedule.parse("15 2 * * *", "Australia/Lord_Howe")  # 02:00 -> 02:30 on 4 October 2026
    assert schedule.next_after(utc(2026, 10, 3)) == local("Australia/Lord_Howe", 2026, 10, 4, 2, 30)


def test_fall_back_repeated_time_fires_once_at_its_first_occurrence() -> None:
    schedule = CronSchedule.parse("30 1 * * *", "America/New_York")  # 02:00 -> 01:00 on 1 November 2026
    due = schedule.due_times(utc(2026, 10, 31), utc(2026, 11, 3))
    assert due == [utc(2026, 10, 31, 5, 30), utc(2026, 11, 1, 5, 30), utc(2026, 11, 2, 6, 30)]
    assert due[1] == local("America/New_York", 2026, 11, 1, 1, 30, fold=0)  # 01:30 EDT


def test_next_after_from_the_second_pass_of_the_repeated_hour_skips_to_the_next_day() -> None:
    schedule = CronSchedule.parse("30 1 * * *", "America/New_York")
    after = local("America/New_York", 2026, 11, 1, 1, 10, fold=1)  # 01:10 EST, after 01:30 EDT fired
    assert schedule.next_after(after) == utc(2026, 11, 2, 6, 30)


def test_wildcard_schedule_fires_in_both_passes_of_the_repeated_hour() -> None:
    """The fall-back rule for wildcard schedules (changed on purpose with the move to cronsim: the second
    pass used to fire nothing, so `*/15 * * * *` went quiet for an hour): every 15 minutes of elapsed time."""
    schedule = CronSchedule.parse("*/15 * * * *", "America/New_York")
    assert schedule.follows_elapsed_time
    due = schedule.due_times(utc(2026, 11, 1, 4), utc(2026, 11, 1, 8))
    assert due == [utc(2026, 11, 1, 4) + timedelta(minutes=15 * i) for i in range(1, 17)]
    walls = [moment.astimezone(ZoneInfo("America/New_York")) for moment in due]
    repeated = [(wall.hour, wall.minute, wall.fold) for wall in walls if wall.hour == 1]
    assert repeated == [(1, m, 0) for m in (0, 15, 30, 45)] + [(1, m, 1) for m in (0, 15, 30, 45)]


def test_hourly_schedule_fires_once_an_hour_across_both_dst_changes() -> None:
    schedule = CronSchedule.parse("30 * * * *", "America/New_York")
    fall_back = schedule.due_times(utc(2026, 11, 1, 4), utc(2026, 11, 1, 8))
    assert fall_back == [utc(2026, 11, 1, h, 30) for h in (4, 5, 6, 7)]  # 00:30, 01:30 EDT, 01:30 EST, 02:30
    assert fall_back[1:3] == [
        local("America/New_York", 2026, 11, 1, 1, 30, fold=0),
        local("America/New_York", 2026, 11, 1, 1, 30, fold=1),
    ]
    spring_forward = schedule.due_times(utc(2026, 3, 8, 5), utc(2026, 3, 8, 9))
    assert spring_forward == [utc(2026, 3, 8, h, 30) for h in (5, 6, 7, 8)]  # 00:30, 01:30, 03:30, 04:30


def test_fixed_hour_schedule_fires_once_in_the_repeated_hour_and_wildcards_do_not() -> None:
    fixed = CronSchedule.parse("30 1 * * *", "America/New_York")
    wildcard_hour = CronSchedule.parse("30 * * * *", "America/New_York")
    window = (utc(2026, 11, 1, 4), utc(2026, 11, 1, 8))
    assert not fixed.follows_elapsed_time
    assert fixed.due_times(*window) == [local("America/New_York", 2026, 11, 1, 1, 30, fold=0)]
    assert len([d for d in wildcard_hour.due_times(*window) if d.astimezone(fixed.zone).hour == 1]) == 2


def test_wildcard_minute_in_a_skipped_hour_does_not_fire_that_day() -> None:
    schedule = CronSchedule.parse("*/10 2 * * *", "America/New_York")  # 02:00 -> 03:00 on 8 March 2026
    due = schedule.due_times(utc(2026, 3, 7, 12), utc(2026, 3, 9, 12))
    assert due == [utc(2026, 3, 9, 6, m) for m in range(0, 60, 10)]  # none on 8 March


def _brute_force_due_times(schedule: CronSchedule, start: datetime, end: datetime) -> list[datetime]:
    """Walk every UTC minute in (start, end]. A fixed-time schedule fires at fold=0 wall times that match,
    and at the first instant after a gap whose skipped wall times include a match; a wildcard schedule
    (`follows_elapsed_time`) fires at every instant whose wall time matches, in either fold, and never for
    wall times a gap skipped."""

    def matches(wall: datetime) -> bool:
        weekday = (wall.weekday() + 1) % 7
        dom, dow = wall.day in schedule.days_of_month, weekday in schedule.days_of_week
        day = (dom or dow) if schedule.day_either else (dom and dow)
        return (
            day
            and wall.month in schedule.months
            and wall.hour in schedule.hours
            and wall.minute in (schedule.minutes)
        )

    zone, found = schedule.zone, []
    moment = start + timedelta(minutes=1)
    while moment <= end:
        here = moment.astimezone(zone)
        before = (moment - timedelta(minutes=1)).astimezone(zone).replace(tzinfo=None)
        skipped = before + timedelta(minutes=1)
        wall = here.replace(tzinfo=None)
        gap_match = False
        while skipped < wall:  # wall-clock minutes the clock jumped over
            gap_match = gap_match or matches(skipped)
            skipped += timedelta(minutes=1)
        if schedule.follows_elapsed_time:
            if matches(wall):
                found.append(moment)
        elif gap_match or (here.fold == 0 and matches(wall)):
            found.append(moment)
        moment += timedelta(minutes=1)
    return found


def _random_field(rng: random.Random, low: int, high: int) -> str:
    a, b = sorted(rng.sample(range(low, high + 1), 2))
    return rng.choice(
        ["*", "*", f"*/{rng.randint(2, 9)}", f"{a}", f"{a}-{b}", f"{a}-{b}/{rng.randint(2, 4)}", f"{a},{b}"]
    )


def test_wildcard_schedule_across_a_half_hour_dst_change() -> None:
    """cronsim alone steps whole hours and would start at 03:30; the adapter checks that hour by minute."""
    schedule = CronSchedule.parse("* 3 * * *", "Australia/Lord_Howe")  # 02:00 -> 02:30 on 4 October 2026
    assert schedule.next_after(utc(2026, 10, 3, 15)) == local("Australia/Lord_Howe", 2026, 10, 4, 3, 0)
    three_oclock = local("Australia/Lord_Howe", 2026, 10, 4, 3, 0)
    assert schedule.latest_due(
        utc(2026, 10, 3), three_oclock + timedelta(minutes=10)
    ) == three_oclock + timedelta(minutes=10)


@pytest.mark.parametrize(
    ("zone", "transition"),
    [
        ("Europe/Berlin", utc(2026, 3, 29, 1)),
        ("Europe/Berlin", utc(2026, 10, 25, 1)),
        ("America/New_York", utc(2026, 3, 8, 7)),
        ("America/New_York", utc(2026, 11, 1, 6)),
        ("Australia/Lord_Howe", utc(2026, 4, 4, 15)),
        ("Australia/Lord_Howe", utc(2026, 10, 3, 15, 30)),
        ("Asia/Tokyo", utc(2026, 2, 28, 12)),
    ],
)
def test_random_schedules_agree_with_brute_force_around_transitions(zone: str, transition: datetime) -> None:
    rng = random.Random(f"{zone}{transition}")
    start, end = transition - timedelta(hours=26), transition + timedelta(hours=22)
    for _ in range(6):
        hours = rng.choice(["*", "0-3", "1,2", "*/2", _random_field(rng, 0, 23)])
        expression = (
            f"{_random_field(rng, 0, 59)} {hours} {rng.choice(['*', '*', '1-31/2'])} * "
            + rng.choice(["*", "*", "mon-fri", "0,6"])
        )
        schedule = CronSchedule.parse(expression, zone)
        expected = _brute_force_due_times(schedule, start, end)
        assert schedule.due_times(start, end, limit=10_000) == expected, expression
        for now in (transition - timedelta(minutes=1), transition, transition + timedelta(minutes=61), end):
            in_window = [moment for moment in expected if moment <= now]
            assert schedule.latest_due(start, now) == (in_window[-1] if in_window else None), (
                expression,
                now,
            )


# due_times and latest_due


def test_due_times_covers_half_open_window() -> None:
    schedule = CronSchedule.parse("0 * * * *")
    assert schedule.due_times(utc(2026, 5, 1, 10), utc(2026, 5, 1, 13)) == [
        utc(2026, 5, 1, 11),
        utc(2026, 5, 1, 12),
        utc(2026, 5, 1, 13),
    ]
    assert schedule.due_times(utc(2026, 5, 1, 13), utc(2026, 5, 1, 10)) == []


def test_due_times_respects_limit() -> None:
    schedule = CronSchedule.parse("* * * * *")
    started = time.perf_counter()
    due = schedule.due_times(utc(2026, 1, 1), utc(2027, 1, 1), limit=5)
    assert time.perf_counter() - started < 0.5
    assert due == [utc(2026, 1, 1, 0, minute) for minute in range(1, 6)]
    assert schedule.due_times(utc(2026, 1, 1), utc(2027, 1, 1), limit=0) == []
    with pytest.raises(ValueError):
        schedule.due_times(utc(2026, 1, 1), utc(2027, 1, 1), limit=-1)


def test_latest_due_returns_the_last_missed_time_once() -> None:
    schedule = CronSchedule.parse("0 * * * *")
    assert schedule.latest_due(utc(2026, 5, 1, 10), utc(2026, 5, 1, 13, 30)) == utc(2026, 5, 1, 13)
    assert schedule.latest_due(utc(2026, 5, 1, 10), utc(2026, 5, 1, 13)) == utc(
        2026, 5, 1, 13
    )  # now included


def test_latest_due_is_none_when_nothing_was_due() -> None:
    schedule = CronSchedule.parse("0 * * * *")
    assert schedule.latest_due(utc(2026, 5, 1, 10), utc(2026, 5, 1, 10, 59)) is None  # after is excluded
    assert schedule.latest_due(utc(2026, 5, 1, 10), utc(2026, 5, 1, 10)) is None
    assert schedule.latest_due(utc(2026, 5, 1, 11), utc(2026, 5, 1, 10)) is None
    assert CronSchedule.parse("0 0 29 2 *").latest_due(utc(2028, 3, 1), utc(2031, 12, 31)) is None


def test_latest_due_after_a_year_down_is_fast() -> None:
    schedule = CronSchedule.parse("* * * * *", "America/New_York")
    started = time.perf_counter()
    latest = schedule.latest_due(utc(2025, 1, 1), utc(2026, 1, 1, 0, 0, 30))
    assert time.perf_counter() - started < 0.5
    assert latest == utc(2026, 1, 1)
    assert CronSchedule.parse("0 0 29 2 *").latest_due(utc(2000, 1, 1), utc(2026, 5, 1)) == utc(2024, 2, 29)


def test_latest_due_in_the_second_pass_of_a_repeated_hour_is_the_first_pass() -> None:
    schedule = CronSchedule.parse("30 1 * * *", "America/New_York")
    now = local("America/New_York", 2026, 11, 1, 1, 10, fold=1)  # 01:10 EST; 01:30 EDT was 40 minutes ago
    assert schedule.latest_due(utc(2026, 10, 1), now) == utc(2026, 11, 1, 5, 30)


def test_latest_due_at_the_end_of_a_gap() -> None:
    schedule = CronSchedule.parse("30 2 * * *", "Europe/Berlin")
    assert schedule.latest_due(utc(2026, 3, 28, 12), utc(2026, 3, 29, 1)) == utc(2026, 3, 29, 1)
    assert schedule.latest_due(utc(2026, 3, 28, 12), utc(2026, 3, 29, 0, 59)) is None


def test_latest_due_rejects_naive_datetimes() -> None:
    with pytest.raises(ValueError, match="aware"):
        CronSchedule.parse("* * * * *").latest_due(utc(2026, 1, 1), datetime(2026, 1, 2))
