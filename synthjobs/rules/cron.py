"""Cron schedules: 5-field expressions in an IANA time zone, evaluated by `cronsim`.

Scheduled retraining asks two questions of a schedule: when is it next due (`next_after`), and what is the
latest due time a beat that was down has missed (`latest_due`), so a missed window fires once, not once per
missed interval. Both are answered by cronsim, forwards and backwards (`reverse=True`), jumping field by field
rather than minute by minute.

Why cronsim and not croniter: cronsim's daylight-saving behaviour is defined and documented (it copies
Debian cron's, which is what operators already expect of a crontab), it iterates backwards for `latest_due`,
it is typed (`py.typed`), small and has no dependencies; croniter's DST handling has changed between
releases and its project was archived for a while in 2024.

What stays ours is the parser, for validation only: the API answers a bad expression with a 422 that names the
field and why ("hour: 24 is out of range 0-23"), where cronsim says only "Bad hour"; and it refuses what
cronsim would accept but a crontab would not (a seconds field, `L`, `W`, `#`, `5/15`). cronsim is then handed
the fields we validated (numbers as explicit lists, `*`-prefixed fields as written, so the rules below that
depend on a leading `*` are unchanged).

Syntax is Vixie cron's: `*`, numbers, ranges `a-b`, steps `*/n` and `a-b/n`, lists `a,b`, names `jan`..`dec`
and `sun`..`sat` (any case), 0 and 7 both Sunday, and the macros in `MACROS`. When day of month and day of
week are both restricted, a day matches if either matches; a field counts as unrestricted when it starts
with `*`, as in Vixie cron (so `*/2` in day of month still means "and", not "or").

Daylight saving time follows Debian cron (and so cronsim), in two kinds of schedule:

- **Fixed-time schedules** (neither the minute nor the hour field starts with `*`: `30 1 * * *`,
  `0 9 * * mon-fri`, `0,30 2 * * *`) are about wall-clock time in the zone. A time that does not exist (the
  spring-forward gap, 02:30 on the day clocks jump from 02:00 to 03:00) fires once, at the first instant after
  the gap (03:00 local); several due times inside one gap, and one at the gap's end, are one firing. A time
  that happens twice (the fall-back hour, 01:30 in America/New_York on the first Sunday of November) fires
  once, at its first occurrence (fold=0); the repeated hour's second pass fires nothing.
- **Wildcard schedules** (the minute or the hour field starts with `*`: `*/15 * * * *`, `30 * * * *`,
  `@hourly`, `*/10 2 * * *`) are about elapsed time: they fire at every instant whose local wall time
  matches. In the fall-back hour they fire in both passes (`*/15 * * * *` fires at 01:00, 01:15, ... EDT and
  again at 01:00, 01:15, ... EST, so it never goes quiet for an hour; `30 * * * *` fires at 01:30 EDT and
  01:30 EST, an hour apart as always). In the spring-forward gap the skipped wall times simply do not happen
  (`30 * * * *` fires at 01:30 and then 03:30, an hour apart; `*/10 2 * * *` does not fire that day).

In a zone whose DST change is not a whole hour (Australia/Lord_Howe, 30 minutes, is the only one today),
cronsim steps a wildcard schedule's hours 3600 s at a time and would skip up to the first half of an hour on
the two change days (`* 3 * * *` starting at 03:30); the adapter checks that hour minute by minute instead
(`_skipped_by_a_partial_hour_shift`), so wildcard schedules are exact there too.

`follows_elapsed_time` says which kind a schedule is. Due times are returned as aware UTC datetimes; they are
strictly increasing with no duplicates (in UTC: a wildcard schedule may repeat a wall-clock time).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from cronsim import CronSim, CronSimError

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

_MONTH_NAMES = {
    name: number
    for number, name in enumerate("jan feb mar apr may jun jul aug sep oct nov dec".split(), start=1)
}
_WEEKDAY_NAMES = {"sun": 0, "mon": 1, "tue": 2, "wed": 3, "thu": 4, "fri": 5, "sat": 6}
_DAYS_IN_MONTH_MAX = (31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)  # February in a leap year
_SECOND = timedelta(seconds=1)
_HOUR = timedelta(hours=1)


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
    equal when their normalised expressions and time zones are. The parsed fields are kept for callers
    that want to show or check them; the due times come from cronsim.
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
    # The minute or hour field starts with `*`: fires by elapsed time across DST (module docstring).
    follows_elapsed_time: bool = field(init=False, repr=False, compare=False)
    zone: ZoneInfo = field(init=False, repr=False, compare=False)
    _cronsim_expression: str = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not isinstance(self.expression, str) or len(self.expression) > MAX_EXPRESSION_LENGTH:
            raise CronError("expression", f"must be a string of at most {MAX_EXPRESSION_LENGTH} characters")
        texts = _split_fields(self.expression)
        values = [_parse_field(text, spec) for text, spec in zip(texts, _FIELDS, strict=True)]
        dom_star, dow_star = texts[2].startswith("*"), texts[4].startswith("*")
        days_of_week = tuple(sorted({day % 7 for day in values[4]}))
        set_attr = object.__setattr__
        set_attr(self, "expression", " ".join(texts))
        set_attr(self, "zone", _load_zone(self.timezone))
        set_attr(self, "minutes", values[0])
        set_attr(self, "hours", values[1])
        set_attr(self, "days_of_month", values[2])
        set_attr(self, "months", values[3])
        set_attr(self, "days_of_week", days_of_week)
        set_attr(self, "day_either", not dom_star and not dow_star)
        set_attr(self, "follows_elapsed_time", texts[0].startswith("*") or texts[1].startswith("*"))
        if not self.day_either and dow_star and not _day_fits_a_month(self.days_of_month, self.months):
            raise CronError("day of month", "no listed day exists in any listed month")
        parsed = (*values[:4], days_of_week)
        set_attr(
            self,
            "_cronsim_expression",
            " ".join(
                text if text.startswith("*") else ",".join(map(str, numbers))
                for text, numbers in zip(texts, parsed, strict=True)
            ),
        )
        try:  # our parser accepted it, so cronsim must: a mismatch is a bug here, not the user's
            CronSim(self._cronsim_expression, datetime.now(UTC))
        except CronSimError as exc:  # pragma: no cover - defensive
            raise AssertionError(f"cronsim rejects {self._cronsim_expression!r}: {exc}") from exc

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
            ValueError: `after` is naive, or no due time exists in the next 50 years (cronsim's horizon)
                or before the end of `datetime`'s range.
        """
        after_utc = _as_utc(after, "after")
        found = self.due_times(after_utc, datetime.max.replace(tzinfo=UTC), limit=1)
        if not found:
            raise ValueError(f"{self.describe()}: no due time after {after} in datetime's range")
        return found[0]

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
        after_utc, until_utc = _as_utc(after, "after"), _as_utc(until, "until")
        found: list[datetime] = []
        if after_utc >= until_utc:
            return found
        ticks = CronSim(self._cronsim_expression, after_utc.astimezone(self.zone))
        try:
            while len(found) < limit:
                due = next(ticks).astimezone(UTC)
                # A fixed-time schedule reads `after` as a wall-clock time: from the second pass of a
                # repeated hour, cronsim first offers the first pass again, which is already past.
                if due <= after_utc or (found and due <= found[-1]):
                    continue
                for missed in self._skipped_by_a_partial_hour_shift(found[-1] if found else after_utc, due):
                    if missed <= until_utc and len(found) < limit:
                        found.append(missed)
                if due > until_utc or len(found) >= limit:
                    break
                found.append(due)
        except (StopIteration, OverflowError):
            pass  # no further due time within cronsim's 50 years, or before datetime.max
        return found

    def _matches(self, moment: datetime) -> bool:
        """Whether the wall time of `moment` in the schedule's zone matches every field."""
        local = moment.astimezone(self.zone)
        if local.minute not in self.minutes or local.hour not in self.hours or local.month not in self.months:
            return False
        on_day_of_month = local.day in self.days_of_month
        on_day_of_week = local.isoweekday() % 7 in self.days_of_week
        return (
            (on_day_of_month or on_day_of_week) if self.day_either else (on_day_of_month and on_day_of_week)
        )

    def _skipped_by_a_partial_hour_shift(self, previous: datetime, due: datetime) -> list[datetime]:
        """Wall-time matches in `(previous, due)` that cronsim stepped over, oldest first.

        cronsim moves a wildcard schedule through its hours 3600 s at a time, which is exact across a
        whole-hour DST change but lands off by the rest of the shift across Lord Howe's 30-minute one. Only
        then (the zone's offset changes by a part of an hour between `previous` and `due`) is the last day of
        that interval checked minute by minute: at most 1440 checks on two days a year, none elsewhere.
        """
        if not self.follows_elapsed_time:
            return []
        shift = _offset(due.astimezone(self.zone)) - _offset(previous.astimezone(self.zone))
        if shift % _HOUR == timedelta(0):
            return []
        start = max(previous, due - timedelta(days=1))
        first = start.replace(second=0, microsecond=0) + timedelta(minutes=1)
        minutes = (first + timedelta(minutes=step) for step in range(24 * 60 + 1))
        return [moment for moment in minutes if start < moment < due and self._matches(moment)]

    def latest_due(self, after: datetime, now: datetime) -> datetime | None:
        """The most recent due time in `(after, now]`, or None when nothing was due.

        A beat that was down uses this to fire a missed window once. It searches backwards from `now`
        (cronsim's `reverse=True`), so its cost does not grow with the length of the outage.

        Args:
            after: an aware datetime, e.g. when the schedule last fired; a due time equal to it is excluded.
            now: an aware datetime; a due time equal to it is included.

        Returns:
            An aware UTC datetime, or None.
        """
        after_utc, now_utc = _as_utc(after, "after"), _as_utc(now, "now")
        if now_utc <= after_utc:
            return None
        # cronsim's reverse search starts one second before its start: a due time at `now` is included.
        start = now_utc.replace(microsecond=0) + _SECOND
        if not self.follows_elapsed_time:
            # A fixed-time schedule reads the start as a wall-clock time. In the second pass of a repeated
            # hour the whole first pass (fold=0) is already in the past, so start after it; the due times
            # this adds after `now` are skipped below.
            local_now = now_utc.astimezone(self.zone)
            start += max(_offset(local_now.replace(fold=0)) - _offset(local_now), timedelta(0))
        try:
            for due_local in CronSim(self._cronsim_expression, start.astimezone(self.zone), reverse=True):
                due = due_local.astimezone(UTC)
                if due <= now_utc:
                    # A match cronsim stepped over after `due` (a partial-hour DST change) is more recent.
                    later = self._skipped_by_a_partial_hour_shift(due, now_utc + _SECOND)
                    due = later[-1] if later else due
                    return due if due > after_utc else None
        except OverflowError:
            raise ValueError(f"{after} .. {now} is too close to the edge of datetime's range") from None
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
