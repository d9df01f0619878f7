"""Cron schedules: 5-field expressions evaluated in an IANA time zone, stdlib only.

Scheduled retraining asks two questions of a schedule: when is it next due (`next_after`), and what is the
latest due time a beat that was down has missed (`latest_due`), so a missed window fires once, not once per
missed interval. Both jump field by field (month, day, hour, minute) instead of stepping minute by minute.

Syntax is Vixie cron's: `*`, numbers, ranges `a-b`, steps `*/n` and `a-b/n`, lists `a,b`, names `jan`..`dec`
and `sun`..`sat` (any case), 0 and 7 both Sunday, and the macros in `MACROS`. When day of month and day of
week are both restricted, a day matches if either matches; a field counts as unrestricted when it starts
with `*`, as in Vixie cron (so `*/2` in day of month still means "and", not "or").

Daylight saving time: the expression is about wall-clock time in the schedule's zone.

- A wall-clock time that does not exist (the spring-forward gap, e.g. 02:30 on the day clocks jump from
  02:00 to 03:00) fires once, at the first instant after the gap (03:00 local). Several due times inside
  one gap, and a due time at the gap's end, are one firing.
- A wall-clock time that happens twice (the fall-back hour, e.g. 01:30 in America/New_York on the first
  Sunday of November) fires once, at its first occurrence (fold=0). The repeated hour's second pass fires
  nothing, so `*/15 * * * *` is silent for an hour of elapsed time that night.

Due times are returned as aware UTC datetimes; they are strictly increasing with no duplicates.
"""

from __future__ import annotations

import calendar
from bisect import bisect_left, bisect_right
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

MAX_EXPRESSION_LENGTH = 200
MACROS = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}
# The Gregorian calendar repeats every 400 years: a schedule with no due time in that span never has one.
SEARCH_YEARS = 400

_MONTH_NAMES = {
    name: number
    for number, name in enumerate("jan feb mar apr may jun jul aug sep oct nov dec".split(), start=1)
}
_WEEKDAY_NAMES = {"sun": 0, "mon": 1, "tue": 2, "wed": 3, "thu": 4, "fri": 5, "sat": 6}
_DAYS_IN_MONTH_MAX = (31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)  # February in a leap year
_MINUTE = timedelta(minutes=1)


class CronError(ValueError):
    """A cron expression or time zone that cannot be parsed; `field` names the part that is wrong."""

    def __init__(self, field_name: str, reason: str) -> None:
        super().__init__(field_name, reason)  # both in args, so the error pickles
        self.field = field_name
        self.reason = reason

    def __str__(self) -> str:
        return f"{self.field}: {self.reason}"


@dataclass(frozen=True)
class _FieldSpec:
    name: str
    low: int
    high: int
    names: dict[str, int]


_FIELDS = (
    _FieldSpec("minute", 0, 59, {}),
    _FieldSpec("hour", 0, 23, {}),
    _FieldSpec("day of month", 1, 31, {}),
    _FieldSpec("month", 1, 12, _MONTH_NAMES),
    _FieldSpec("day of week", 0, 7, _WEEKDAY_NAMES),
)


@dataclass(frozen=True)
class CronSchedule:
    """A parsed cron expression in a time zone. Build it with `CronSchedule.parse` (or the constructor).

    `expression` holds the normalised text (lower case, single spaces, macros expanded); two schedules are
    equal when their normalised expressions and time zones are.
    """

    expression: str
    timezone: str = "UTC"
    minutes: tuple[int, ...] = field(init=False, repr=False, compare=False)
    hours: tuple[int, ...] = field(init=False, repr=False, compare=False)
    days_of_month: tuple[int, ...] = field(init=False, repr=False, compare=False)
    months: tuple[int, ...] = field(init=False, repr=False, compare=False)
    days_of_week: tuple[int, ...] = field(init=False, repr=False, compare=False)  # 0 = Sunday
    # Vixie cron: "or" when both day fields are restricted, "and" otherwise.
    day_either: bool = field(init=False, repr=False, compare=False)
    zone: ZoneInfo = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not isinstance(self.expression, str) or len(self.expression) > MAX_EXPRESSION_LENGTH:
            raise CronError("expression", f"must be a string of at most {MAX_EXPRESSION_LENGTH} characters")
        texts = _split_fields(self.expression)
        values = [_parse_field(text, spec) for text, spec in zip(texts, _FIELDS, strict=True)]
        dom_star, dow_star = texts[2].startswith("*"), texts[4].startswith("*")
        set_attr = object.__setattr__
        set_attr(self, "expression", " ".join(texts))
        set_attr(self, "zone", _load_zone(self.timezone))
        set_attr(self, "minutes", values[0])
        set_attr(self, "hours", values[1])
        set_attr(self, "days_of_month", values[2])
        set_attr(self, "months", values[3])
        set_attr(self, "days_of_week", tuple(sorted({day % 7 for day in values[4]})))
        set_attr(self, "day_either", not dom_star and not dow_star)
        if not self.day_either and dow_star and not _day_fits_a_month(self.days_of_month, self.months):
            raise CronError("day of month", "no listed day exists in any listed month")

    @classmethod
    def parse(cls, expression: str, timezone: str = "UTC") -> CronSchedule:
        """Parse a 5-field cron expression or a macro such as `@daily`.

        Args:
            expression: `minute hour day-of-month month day-of-week`, or one of `MACROS`.
            timezone: an IANA time zone name; the expression is read as wall-clock time there.

        Returns:
            The schedule.

        Raises:
            CronError: the expression or time zone is invalid; the message names the field and why.
        """
        return cls(expression, timezone)

    def describe(self) -> str:
        """The normalised expression and its time zone, e.g. `0 9 * * mon-fri (Asia/Tokyo)`."""
        return f"{self.expression} ({self.timezone})"

    def next_after(self, after: datetime) -> datetime:
        """The first due time strictly after `after`, as an aware UTC datetime (DST rules: module docstring).

        Args:
            after: an aware datetime, in any zone.

        Returns:
            The due time, in UTC.

        Raises:
            ValueError: `after` is naive, or no due time exists before the end of `datetime`'s range.
        """
        after_utc = _as_utc(after, "after")
        try:
            wall = _wall_minute(after_utc, self.zone) + _MINUTE
            while True:  # loops more than once only when `after` is in the second pass of a repeated hour
                candidate = self._next_wall(wall)
                due = _wall_to_utc(candidate, self.zone)
                if due > after_utc:
                    return due
                wall = candidate + _MINUTE
        except OverflowError:
            raise ValueError(f"{self.describe()}: no due time after {after} in datetime's range") from None

    def due_times(self, after: datetime, until: datetime, limit: int = 1000) -> list[datetime]:
        """All due times in `(after, until]`, oldest first, at most `limit` of them (the earliest).

        Args:
            after: an aware datetime; a due time equal to it is excluded.
            until: an aware datetime; a due time equal to it is included.
            limit: the most due times to return.

        Returns:
            Aware UTC datetimes, strictly increasing.
        """
        if limit < 0:
            raise ValueError("limit must not be negative")
        current, until_utc = _as_utc(after, "after"), _as_utc(until, "until")
        found: list[datetime] = []
        while len(found) < limit and current < until_utc:
            current = self.next_after(current)
            if current > until_utc:
                break
            found.append(current)
        return found

    def latest_due(self, after: datetime, now: datetime) -> datetime | None:
        """The most recent due time in `(after, now]`, or None when nothing was due.

        A beat that was down uses this to fire a missed window once. It searches backwards from `now`, so
        its cost does not grow with the length of the outage.

        Args:
            after: an aware datetime, e.g. when the schedule last fired; a due time equal to it is excluded.
            now: an aware datetime; a due time equal to it is included.

        Returns:
            An aware UTC datetime, or None.
        """
        after_utc, now_utc = _as_utc(after, "after"), _as_utc(now, "now")
        if now_utc <= after_utc:
            return None
        try:
            local_now = now_utc.astimezone(self.zone)
            wall = _wall_minute(now_utc, self.zone)
            # In the second pass of a repeated hour, the whole first pass (fold=0) is already in the past.
            wall += max(_offset(local_now.replace(fold=0)) - _offset(local_now), timedelta(0))
            # Wall-clock offsets stay within a day of UTC, so earlier local dates all lie before `after`.
            floor = max(after_utc.date(), date.min + timedelta(days=3)) - timedelta(days=3)
            while (candidate := self._prev_wall(wall, floor)) is not None:
                due = _wall_to_utc(candidate, self.zone)
                if due <= now_utc:
                    return due if due > after_utc else None
                wall = candidate - _MINUTE
            return None
        except OverflowError:
            raise ValueError(f"{after} .. {now} is too close to the edge of datetime's range") from None

    # Wall-clock search: naive local datetimes at minute precision, jumping field by field.

    def _days_in(self, year: int, month: int) -> list[int]:
        """The days of `month` that match the day-of-month and day-of-week fields."""
        if month not in self.months:
            return []
        first_weekday, length = calendar.monthrange(year, month)  # Monday = 0
        days = []
        for day in range(1, length + 1):
            dom = day in self.days_of_month
            dow = (first_weekday + day) % 7 in self.days_of_week  # cron: Sunday = 0
            if (dom or dow) if self.day_either else (dom and dow):
                days.append(day)
        return days

    def _next_date(self, start: date) -> date:
        year, month, day = start.year, start.month, start.day
        last_year = min(start.year + SEARCH_YEARS, date.max.year)
        while year <= last_year:
            days = self._days_in(year, month)
            index = bisect_left(days, day)
            if index < len(days):
                return date(year, month, days[index])
            year, month, day = (year + month // 12, month % 12 + 1, 1)
        raise ValueError(f"{self.describe()} has no due time from {start} to the end of {last_year}")

    def _prev_date(self, start: date, floor: date) -> date | None:
        year, month, day = start.year, start.month, start.day
        while (year, month) >= (floor.year, floor.month):
            days = self._days_in(year, month)
            index = bisect_right(days, day) - 1
            if index >= 0:
                found = date(year, month, days[index])
                return found if found >= floor else None
            year, month, day = (year, month - 1, 31) if month > 1 else (year - 1, 12, 31)
        return None

    def _next_wall(self, start: datetime) -> datetime:
        """The first matching wall-clock minute at or after `start`."""
        day, hour, minute = start.date(), start.hour, start.minute
        while True:
            found = self._next_date(day)
            if found != day:
                hour = minute = 0
            clock = _first_time_from(self.hours, self.minutes, hour, minute)
            if clock is not None:
                return datetime.combine(found, clock)
            day, hour, minute = found + timedelta(days=1), 0, 0

    def _prev_wall(self, start: datetime, floor: date) -> datetime | None:
        """The last matching wall-clock minute at or before `start`, not before `floor`."""
        day, hour, minute = start.date(), start.hour, start.minute
        while (found := self._prev_date(day, floor)) is not None:
            if found != day:
                hour, minute = 23, 59
            clock = _last_time_until(self.hours, self.minutes, hour, minute)
            if clock is not None:
                return datetime.combine(found, clock)
            day, hour, minute = found - timedelta(days=1), 23, 59
        return None


def parse_cron(expression: str, timezone: str = "UTC") -> CronSchedule:
    """Parse a cron expression in a time zone; the same as `CronSchedule.parse`."""
    return CronSchedule.parse(expression, timezone)


def _split_fields(expression: str) -> list[str]:
    text = expression.strip().lower()
    if text.startswith("@"):
        if text not in MACROS:
            raise CronError("expression", f"unknown macro {text!r}; known: {', '.join(MACROS)}")
        text = MACROS[text]
    texts = text.split()
    if len(texts) != len(_FIELDS):
        names = " ".join(spec.name.replace(" ", "-") for spec in _FIELDS)
        raise CronError("expression", f"expected 5 fields ({names}), got {len(texts)}")
    return texts


def _parse_field(text: str, spec: _FieldSpec) -> tuple[int, ...]:
    values: set[int] = set()
    for item in text.split(","):
        values.update(_parse_item(item, spec))
    return tuple(sorted(values))


def _parse_item(item: str, spec: _FieldSpec) -> range:
    if not item:
        raise CronError(spec.name, "empty value in list")
    base, slash, step_text = item.partition("/")
    step = 1
    if slash:
        if not step_text.isascii() or not step_text.isdigit():
            raise CronError(spec.name, f"step {step_text!r} in {item!r} is not a positive number")
        step = int(step_text)
        if step == 0:
            raise CronError(spec.name, f"step of 0 in {item!r}")
    if base == "*":
        return range(spec.low, spec.high + 1, step)
    if "-" in base:
        start_text, _, end_text = base.partition("-")
        start, end = _parse_value(start_text, item, spec), _parse_value(end_text, item, spec)
        if end_text == "sun" and start > end:  # "fri-sun": Sunday as 7
            end = 7
        if start > end:
            raise CronError(spec.name, f"range {item!r} is reversed")
        return range(start, end + 1, step)
    if slash:
        raise CronError(spec.name, f"a step needs '*' or a range before it, got {item!r}")
    value = _parse_value(base, item, spec)
    return range(value, value + 1)


def _parse_value(text: str, item: str, spec: _FieldSpec) -> int:
    if text in spec.names:
        return spec.names[text]
    if not text:
        raise CronError(spec.name, f"missing number in {item!r}")
    if not text.isascii() or not text.isdigit():
        kind = f"a number or a {spec.name} name" if spec.names else "a number"
        raise CronError(spec.name, f"{text!r} is not {kind}")
    value = int(text)
    if not spec.low <= value <= spec.high:
        raise CronError(spec.name, f"{value} is out of range {spec.low}-{spec.high}")
    return value


def _day_fits_a_month(days: tuple[int, ...], months: tuple[int, ...]) -> bool:
    return any(days[0] <= _DAYS_IN_MONTH_MAX[month - 1] for month in months)


def _load_zone(name: str) -> ZoneInfo:
    if not isinstance(name, str) or name == "localtime":  # the host's zone is not a schedule's
        raise CronError("time zone", f"unknown time zone {name!r}")
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        raise CronError("time zone", f"unknown time zone {name!r}") from None


def _as_utc(moment: datetime, name: str) -> datetime:
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError(f"{name} must be an aware datetime, got naive {moment}")
    return moment.astimezone(UTC)


def _offset(moment: datetime) -> timedelta:
    offset = moment.utcoffset()
    assert offset is not None  # an aware datetime in a ZoneInfo zone
    return offset


def _wall_minute(moment: datetime, zone: ZoneInfo) -> datetime:
    """The naive wall-clock minute in `zone` that contains `moment`."""
    return moment.astimezone(zone).replace(tzinfo=None, second=0, microsecond=0, fold=0)


def _wall_to_utc(wall: datetime, zone: ZoneInfo) -> datetime:
    """When wall-clock minute `wall` fires: its first occurrence, or the end of the gap it falls in."""
    due = wall.replace(tzinfo=zone, fold=0).astimezone(UTC)
    if due.astimezone(zone).replace(tzinfo=None) == wall:
        return due
    # In a gap, fold=0 reads the wall time with the offset from before the transition, which lands after
    # it, and fold=1 with the offset from after, which lands before it. Bisect to the transition instant.
    before = wall.replace(tzinfo=zone, fold=1).astimezone(UTC)
    offset_before = _offset(before.astimezone(zone))
    while due - before > timedelta(seconds=1):
        middle = before + (due - before) // 2
        middle -= timedelta(microseconds=middle.microsecond)
        if middle.astimezone(zone).utcoffset() == offset_before:
            before = middle
        else:
            due = middle
    return due


def _first_time_from(hours: tuple[int, ...], minutes: tuple[int, ...], hour: int, minute: int) -> time | None:
    index = bisect_left(hours, hour)
    if index < len(hours) and hours[index] == hour:
        at = bisect_left(minutes, minute)
        if at < len(minutes):
            return time(hour, minutes[at])
        index += 1
    return time(hours[index], minutes[0]) if index < len(hours) else None


def _last_time_until(hours: tuple[int, ...], minutes: tuple[int, ...], hour: int, minute: int) -> time | None:
    index = bisect_right(hours, hour) - 1
    if index >= 0 and hours[index] == hour:
        at = bisect_right(minutes, minute) - 1
        if at >= 0:
            return time(hour, minutes[at])
        index -= 1
    return time(hours[index], minutes[-1]) if index >= 0 else None
