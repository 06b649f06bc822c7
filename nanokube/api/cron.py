"""Cron schedules as CronJobs use them: parsing and the next fire time.

Upstream Kubernetes parses `spec.schedule` with robfig/cron v3's `ParseStandard`
and the CronJob controller asks the parsed schedule for its `Next` time; this
module reimplements both so that validation messages and fire times match:

- five fields (minute hour day-of-month month day-of-week), each a list of
  `*`, `?`, `N`, `N-M`, with an optional `/STEP` (`N/STEP` means `N-max/STEP`);
  month and weekday names (`jan`, `mon`, case-insensitive); weekdays 0-6
  (0 is Sunday)
- descriptors `@yearly` `@annually` `@monthly` `@weekly` `@daily` `@midnight`
  `@hourly` and `@every DURATION` (a Go duration, at least one second)
- an optional `TZ=ZONE ` or `CRON_TZ=ZONE ` prefix (the API rejects it on new
  CronJobs in favour of `spec.timeZone`, but old objects may carry it)
- day-of-month and day-of-week combine like Vixie cron: if either is a star
  both must match, otherwise either may

`Schedule.next` walks the wall clock of the schedule's time zone the way robfig
does, so daylight-saving transitions behave identically: a time that does not
exist on the day clocks spring forward is skipped, and a time that occurs twice
when they fall back fires twice. Arithmetic is done on UTC instants; wall-clock
dates are turned into instants with Go's `time.Date` rule (see `_instant`).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, tzinfo
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

__all__ = [
    "CronError",
    "Every",
    "Schedule",
    "load_zone",
    "most_recent",
    "parse",
    "parse_duration",
]

STAR = 1 << 63  # marks a field written as `*` or `?` (robfig's starBit)
_MONTHS = {
    m: i + 1 for i, m in enumerate("jan feb mar apr may jun jul aug sep oct nov dec".split())
}
_DAYS = {d: i for i, d in enumerate("sun mon tue wed thu fri sat".split())}
_INT = re.compile(r"[+-]?[0-9]+")
_DURATION_UNITS = {
    "ns": 1e-9,
    "us": 1e-6,
    "µs": 1e-6,
    "μs": 1e-6,
    "ms": 1e-3,
    "s": 1.0,
    "m": 60.0,
    "h": 3600.0,
}
_DURATION_PART = re.compile(r"([0-9]*(?:\.[0-9]*)?)(ns|us|µs|μs|ms|s|m|h)")
# How far ahead `next` looks before giving up (robfig: five years).
_YEAR_LIMIT = 5


class CronError(ValueError):
    """A schedule that does not parse; the message is robfig/cron's."""


@dataclass(frozen=True)
class _Bounds:
    low: int
    high: int
    names: dict[str, int] | None = None


_MINUTE = _Bounds(0, 59)
_HOUR = _Bounds(0, 23)
_DOM = _Bounds(1, 31)
_MONTH = _Bounds(1, 12, _MONTHS)
_DOW = _Bounds(0, 6, _DAYS)


def _bits(low: int, high: int, step: int) -> int:
    out = 0
    for i in range(low, high + 1, step):
        out |= 1 << i
    return out


def _must_int(expr: str) -> int:
    if not _INT.fullmatch(expr):
        raise CronError(
            f'failed to parse int from {expr}: strconv.Atoi: parsing "{expr}": invalid syntax'
        )
    num = int(expr)
    if num < 0:
        raise CronError(f"negative number ({num}) not allowed: {expr}")
    return num


def _int_or_name(expr: str, b: _Bounds) -> int:
    if b.names is not None and expr.lower() in b.names:
        return b.names[expr.lower()]
    return _must_int(expr)


def _range(expr: str, b: _Bounds) -> int:
    range_and_step = expr.split("/")
    low_high = range_and_step[0].split("-")
    extra = 0
    if low_high[0] in ("*", "?"):
        start, end, extra = b.low, b.high, STAR
    else:
        start = _int_or_name(low_high[0], b)
        if len(low_high) == 1:
            end = start
        elif len(low_high) == 2:
            end = _int_or_name(low_high[1], b)
        else:
            raise CronError(f"too many hyphens: {expr}")
    if len(range_and_step) == 1:
        step = 1
    elif len(range_and_step) == 2:
        step = _must_int(range_and_step[1])
        if len(low_high) == 1:  # "N/step" means "N-max/step"
            end = b.high
        if step > 1:
            extra = 0
    else:
        raise CronError(f"too many slashes: {expr}")
    if start < b.low:
        raise CronError(f"beginning of range ({start}) below minimum ({b.low}): {expr}")
    if end > b.high:
        raise CronError(f"end of range ({end}) above maximum ({b.high}): {expr}")
    if start > end:
        raise CronError(f"beginning of range ({start}) beyond end of range ({end}): {expr}")
    if step == 0:
        raise CronError(f"step of range should be a positive number: {expr}")
    return _bits(start, end, step) | extra


def _field(text: str, b: _Bounds) -> int:
    out = 0
    for expr in text.split(","):
        out |= _range(expr, b)
    return out


def load_zone(name: str) -> tzinfo:
    """An IANA time zone, with Go's `time.LoadLocation` error text."""
    if name in ("", "UTC"):
        return UTC
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        raise CronError(f"unknown time zone {name}") from None


def parse_duration(text: str) -> float:
    """Seconds in a Go duration string (`1h30m`, `90s`, `1.5h`), as `time.ParseDuration`."""
    s = text
    sign = 1.0
    if s[:1] in ("+", "-"):
        sign = -1.0 if s[0] == "-" else 1.0
        s = s[1:]
    if s == "0":
        return 0.0
    if not s:
        raise CronError(f'time: invalid duration "{text}"')
    total = 0.0
    pos = 0
    while pos < len(s):
        m = _DURATION_PART.match(s, pos)
        if not m or m.group(1) in ("", "."):
            if m is None and re.match(r"[0-9.]+$", s[pos:]):
                raise CronError(f'time: missing unit in duration "{text}"')
            raise CronError(f'time: invalid duration "{text}"')
        total += float(m.group(1)) * _DURATION_UNITS[m.group(2)]
        pos = m.end()
    return sign * total


@dataclass(frozen=True)
class Every:
    """`@every DURATION`: a constant delay, whole seconds, at least one."""

    seconds: int

    def next(self, after: datetime) -> datetime | None:
        base = _aware(after)
        return base.replace(microsecond=0) + timedelta(seconds=self.seconds)


@dataclass(frozen=True)
class Schedule:
    """A parsed five-field schedule: a bit set per field and the zone it runs in."""

    minute: int
    hour: int
    dom: int
    month: int
    dow: int
    tz: tzinfo = UTC

    def _day_matches(self, w: datetime) -> bool:
        dom = bool((1 << w.day) & self.dom)
        dow = bool((1 << ((w.weekday() + 1) % 7)) & self.dow)
        if self.dom & STAR or self.dow & STAR:
            return dom and dow
        return dom or dow

    def _wall(self, ts: int) -> datetime:
        return datetime.fromtimestamp(ts, self.tz)

    def next(self, after: datetime) -> datetime | None:
        """The first fire time strictly after `after` (aware; naive means UTC), or None
        if there is none within five years (e.g. `0 0 30 2 *`). The result is in
        `after`'s time zone."""
        after = _aware(after)
        ts = math.floor(after.timestamp()) + 1  # the upcoming whole second
        added = False
        year_limit = self._wall(ts).year + _YEAR_LIMIT
        while True:  # robfig's WRAP label: start over from the month
            w = self._wall(ts)
            if w.year > year_limit:
                return None
            wrapped = False
            while not (1 << w.month) & self.month:
                if not added:
                    added = True
                    ts = _instant(w.year, w.month, 1, 0, 0, 0, self.tz)
                    w = self._wall(ts)
                ts = _instant(w.year, w.month + 1, w.day, w.hour, w.minute, w.second, self.tz)
                w = self._wall(ts)
                if w.month == 1:
                    wrapped = True
                    break
            if wrapped:
                continue
            while not self._day_matches(w):
                if not added:
                    added = True
                    ts = _instant(w.year, w.month, w.day, 0, 0, 0, self.tz)
                    w = self._wall(ts)
                ts = _instant(w.year, w.month, w.day + 1, w.hour, w.minute, w.second, self.tz)
                w = self._wall(ts)
                # A day that does not start at midnight (DST at 00:00) is pulled back to it.
                if w.hour != 0:
                    ts += (24 - w.hour) * 3600 if w.hour > 12 else -w.hour * 3600
                    w = self._wall(ts)
                if w.day == 1:
                    wrapped = True
                    break
            if wrapped:
                continue
            while not (1 << w.hour) & self.hour:
                if not added:
                    added = True
                    ts = _instant(w.year, w.month, w.day, w.hour, 0, 0, self.tz)
                ts += 3600
                w = self._wall(ts)
                if w.hour == 0:
                    wrapped = True
                    break
            if wrapped:
                continue
            while not (1 << w.minute) & self.minute:
                if not added:
                    added = True
                    ts -= ts % 60
                ts += 60
                w = self._wall(ts)
                if w.minute == 0:
                    wrapped = True
                    break
            if wrapped:
                continue
            # The seconds field of a standard schedule is always 0.
            if w.second != 0:
                added = True
                ts += 60 - w.second
                continue
            return datetime.fromtimestamp(ts, after.tzinfo)


def _aware(t: datetime) -> datetime:
    return t if t.tzinfo is not None else t.replace(tzinfo=UTC)


def _offset(ts: int, tz: tzinfo) -> int:
    off = datetime.fromtimestamp(ts, tz).utcoffset()
    return int(off.total_seconds()) if off is not None else 0


def _instant(
    year: int, month: int, day: int, hour: int, minute: int, second: int, tz: tzinfo
) -> int:
    """Go's `time.Date`: out-of-range fields roll over (day 32 is next month's 1st),
    and a wall time in a DST gap or overlap is resolved the way Go resolves it:
    take the offset in force at the wall time read as UTC; keep it if the
    resulting instant still has that offset, else use the instant's offset."""
    year += (month - 1) // 12
    month = (month - 1) % 12 + 1
    naive = datetime(year, month, 1) + timedelta(
        days=day - 1, hours=hour, minutes=minute, seconds=second
    )
    as_utc = int(naive.replace(tzinfo=UTC).timestamp())
    first = _offset(as_utc, tz)
    utc = as_utc - first
    second_offset = _offset(utc, tz)
    if second_offset != first:
        utc = as_utc - second_offset
    return utc


_DESCRIPTORS = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}


def parse(spec: str, tz: tzinfo = UTC) -> Schedule | Every:
    """Parse a schedule as robfig/cron's `ParseStandard`; `tz` is the zone used when
    the spec has no `TZ=`/`CRON_TZ=` prefix. Raises CronError with robfig's message."""
    if not spec:
        raise CronError("empty spec string")
    if spec.startswith(("TZ=", "CRON_TZ=")):
        space = spec.find(" ")
        name = spec[spec.index("=") + 1 : space if space >= 0 else len(spec)]
        try:
            tz = load_zone(name)
        except CronError as err:
            raise CronError(f"provided bad location {name}: {err}") from None
        spec = spec[space:].strip() if space >= 0 else ""
    if spec.startswith("@"):
        if spec.startswith("@every "):
            try:
                seconds = parse_duration(spec[len("@every ") :])
            except CronError as err:
                raise CronError(f"failed to parse duration {spec}: {err}") from None
            return Every(max(1, int(seconds)))
        if spec not in _DESCRIPTORS:
            raise CronError(f"unrecognized descriptor: {spec}")
        spec = _DESCRIPTORS[spec]
    fields = spec.split()
    if len(fields) != 5:
        raise CronError(f"expected exactly 5 fields, found {len(fields)}: [{' '.join(fields)}]")
    return Schedule(
        minute=_field(fields[0], _MINUTE),
        hour=_field(fields[1], _HOUR),
        dom=_field(fields[2], _DOM),
        month=_field(fields[3], _MONTH),
        dow=_field(fields[4], _DOW),
        tz=tz,
    )


def most_recent(
    schedule: Schedule | Every, earliest: datetime, now: datetime, limit: int = 100
) -> tuple[datetime | None, int]:
    """The latest fire time in (earliest, now] and how many fell in that window.

    This is what the CronJob controller needs each sync (upstream's
    `mostRecentScheduleTime`): whether a run is due, and whether too many were
    missed (it stops counting past `limit`, as upstream warns past 100)."""
    last: datetime | None = None
    count = 0
    t = schedule.next(earliest)
    while t is not None and t <= now:
        last, count = t, count + 1
        if count > limit:
            break
        t = schedule.next(t)
    return last, count
