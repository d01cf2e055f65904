"""Reversible value formats: the same data written differently by two systems.

A column mapping may say that the source's ``DATE`` is the target's text ``'01/01/2024'``, that
an integer count of cents is a ``NUMERIC`` amount, or that ``1234.56`` is written ``'1.234,56 €'``.
Each such format is one object with a forward function (:meth:`Format.to_target`) and its
inverse (:meth:`Format.to_source`), so a mapping declared once runs in both directions.
``None`` (SQL NULL) passes through both unchanged.

Everything that can be worked out once is worked out at construction: the format is checked
(a bad one raises :class:`FormatError`, a configuration error), compiled to a fast formatter
and parser, and probed with sample values to find out whether it is *reversible* — whether
``to_source(to_target(v)) == v`` for every value. A format that loses information (``%m/%Y``
drops the day) is still usable one way; it says so with ``reversible = False`` and a ``why``,
and the mapping layer refuses to use it backwards. A single value that does not fit raises
:class:`ValueFormatError`, naming the value and the format.

Decisions
---------
Dates (:func:`date_format`)
    Output comes from a function compiled from the strftime format; numeric fields are
    zero-padded, so year 1 is ``0001`` (CPython's ``strftime('%Y')`` gives ``1`` on Linux, which
    ``strptime`` cannot read back). Text is read by a regular expression compiled from the format
    when it uses only ``%Y %m %d %H %M %S %f %z`` and literal text, for text in exactly the width
    the formatter writes; anything else (names, ``%I %p``, single-digit fields, ``+01:00``) goes
    to :func:`datetime.strptime`, which accepts the same values. A time part finer than the
    format keeps (microseconds for ``%H:%M:%S``) is refused per value rather than dropped,
    unless the format is built with ``truncate=True``.

Time zones
    Without ``timezone``, naive values are formatted as they are and an aware value is refused
    unless the format has ``%z`` (formatting it would silently drop its offset). With
    ``timezone=``, the source side holds *aware* datetimes (a ``timestamptz``): ``to_target``
    converts an aware value to the zone before formatting (a naive value is taken to be wall
    time in the zone already); ``to_source`` reads the text as wall time in the zone (or at the
    offset it carries, with ``%z``) and returns an aware datetime in UTC.

    A wall time becomes an instant by its ``fold`` attribute, which is 0 for every value read
    from text or a database: an ambiguous time (the repeated hour when clocks go back) is its
    *first* occurrence; a time that does not exist (skipped when clocks go forward) is read with
    the offset in force before the gap, so it lands after the gap (02:30 on 2024-03-31 in
    Europe/Berlin is 01:30 UTC = 03:30 CEST). So text without ``%z`` in a zone that has ever set
    its clocks back cannot tell apart the two instants of a repeated hour: such a format is
    marked not reversible (``%z`` fixes it). The same holds for :func:`timezone_shift` into
    such a zone.

Amounts (:func:`currency_text`)
    Symbols, separators, grouping and the place of the sign come from babel's CLDR data for the
    locale, read once at construction; the output equals ``babel.numbers.format_currency``
    (standard or accounting pattern), including its no-break spaces: German is
    ``'1.234,56\\xa0€'``. ``plain_spaces=True`` writes ordinary spaces instead; ``pattern=``
    takes any CLDR number pattern. Two differences: a negative zero is written as zero, and
    where babel mangles apostrophe group separators (de_CH, 1'000'000 or more) the output here
    is the correct one. Parsing accepts any kind of space (normal, no-break, narrow no-break,
    thin) where the locale writes one, the currency's symbol, its ISO code or neither, a minus
    sign (``-`` or ``−``) before or after symbol and number, and accounting parentheses.
    Another currency's symbol is refused. Nothing ever goes through ``float``, and a value with
    more fraction digits than the currency has is refused, never rounded.
"""

from __future__ import annotations

import re
from datetime import date, datetime, time, timedelta, timezone as dt_timezone
from decimal import MAX_EMAX, MAX_PREC, MIN_EMIN, Context, Decimal, Inexact, InvalidOperation
from functools import lru_cache
from typing import Any, Callable, Literal, Protocol, runtime_checkable
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from babel import Locale, UnknownLocaleError
from babel.numbers import (
    NumberFormatError,
    NumberPattern,
    UnknownCurrencyError,
    get_currency_precision,
    get_currency_symbol,
    parse_decimal,
    parse_pattern,
    validate_currency,
)

from .errors import ConfigError, DataError

__all__ = [
    "Format",
    "FormatError",
    "ValueFormatError",
    "DateFormat",
    "TimezoneShift",
    "MinorUnits",
    "CurrencyText",
    "date_format",
    "timezone_shift",
    "minor_units",
    "currency_text",
]


class FormatError(ConfigError, ValueError):
    """A format cannot be built: the message says what is wrong and what is accepted."""


class ValueFormatError(DataError, ValueError):
    """One value does not fit a format: the message names the value and the format."""


@runtime_checkable
class Format(Protocol):
    """A pair of inverse functions between a source value and a target value."""

    description: str
    reversible: bool  # to_source(to_target(v)) == v for every value to_target accepts
    why: str | None  # why not, when not reversible

    def to_target(self, value: Any) -> Any: ...

    def to_source(self, value: Any) -> Any: ...


Kind = Literal["auto", "date", "time", "datetime"]

UTC = dt_timezone.utc

# ---------------------------------------------------------------------------------------------
# dates and times
# ---------------------------------------------------------------------------------------------

# The directives datetime.strptime understands (CPython 3.11), so every format can be read back.
_DIRECTIVES = "aAbBcdfGHIjmMpSuUVwWxXyYzZ"
_DATE_DIRECTIVES = frozenset("aAbBcdGjmuUVwWxyY")
_TIME_DIRECTIVES = frozenset("cfHIMpSXzZ")
_ACCEPTED = " ".join(f"%{c}" for c in sorted(_DIRECTIVES, key=lambda c: (c.lower(), c))) + " %%"

# Fields written from attributes (zero-padded, any year); other directives go to strftime.
_ATTRIBUTES = {
    "Y": ("year", "04d"), "m": ("month", "02d"), "d": ("day", "02d"),
    "H": ("hour", "02d"), "M": ("minute", "02d"), "S": ("second", "02d"), "f": ("microsecond", "06d"),
}
_DATE_ATTRIBUTES = frozenset("Ymd")
_TIME_ATTRIBUTES = frozenset("HMSf")

# The fast parser: exactly the text the formatter writes for these directives.
_FAST = {"Y": "[0-9]{4}", "m": "[0-9]{2}", "d": "[0-9]{2}", "H": "[0-9]{2}", "M": "[0-9]{2}",
         "S": "[0-9]{2}", "f": "[0-9]{6}", "z": "[+-][0-9]{2}[0-5][0-9]"}
_FIELDS = "YmdHMSf"  # datetime's positional arguments, in order
_DEFAULTS = ("1900", "1", "1", "0", "0", "0", "0")  # what strptime assumes for a missing field

_TYPES: dict[str, Any] = {"date": date, "time": time, "datetime": datetime}

# From the finest: a time field and the directives that write it. A format keeps the fields
# from its finest directive up; finer ones are dropped.
_UNITS = (
    ("microsecond", frozenset("f")), ("second", frozenset("ScX")),
    ("minute", frozenset("McX")), ("hour", frozenset("HIcX")),
)
_LOSES: tuple[Callable[[Any], Any] | None, ...] = (
    None,
    lambda v: v.microsecond,
    lambda v: v.second or v.microsecond,
    lambda v: v.minute or v.second or v.microsecond,
    lambda v: v.hour or v.minute or v.second or v.microsecond,
)
_UNIT_NAMES = {
    "microsecond": ("a fraction of a second", "%f"), "second": ("seconds", "%S"),
    "minute": ("minutes", "%M"), "hour": ("a time of day", "%H:%M:%S"),
}

_ISO_EXAMPLE = {"date": "'2024-01-01'", "time": "'13:45:00'", "datetime": "'2024-01-01 13:45:00'"}


def _tokens(fmt: str) -> list[tuple[bool, str]]:
    """Split a strftime format into (is_directive, text) tokens; refuse unknown directives."""
    tokens: list[tuple[bool, str]] = []
    unknown: list[str] = []
    literal: list[str] = []
    i = 0
    while i < len(fmt):
        c = fmt[i]
        if c != "%":
            literal.append(c)
            i += 1
            continue
        if i + 1 == len(fmt):
            raise FormatError(f"date format {fmt!r} ends with a lone '%': write '%%' for a percent sign")
        d = fmt[i + 1]
        i += 2
        if d == "%":
            literal.append("%")
        elif d in _DIRECTIVES:
            if literal:
                tokens.append((False, "".join(literal)))
                literal = []
            tokens.append((True, d))
        elif f"%{d}" not in unknown:
            unknown.append(f"%{d}")
    if literal:
        tokens.append((False, "".join(literal)))
    if unknown:
        raise FormatError(
            f"date format {fmt!r} has unknown directive{'s' if len(unknown) > 1 else ''} "
            f"{', '.join(unknown)}; accepted: {_ACCEPTED}"
        )
    if not any(is_directive for is_directive, _ in tokens):
        raise FormatError(
            f"date format {fmt!r} has no directive, so it cannot hold a date or time; "
            f"use e.g. '%Y-%m-%d' or '%H:%M:%S' (accepted: {_ACCEPTED})"
        )
    return tokens


@lru_cache(maxsize=None)
def _sets_clocks_back(zone: ZoneInfo) -> bool:
    """Whether the zone's UTC offset ever decreases (so some wall times happen twice)."""
    previous: timedelta | None = None
    for year in range(1900, 2101):
        for month in (1, 4, 7, 10):
            offset = datetime(year, month, 15, tzinfo=UTC).astimezone(zone).utcoffset()
            if previous is not None and offset is not None and offset < previous:
                return True
            previous = offset
    return False


def _zone(name: str, what: str) -> ZoneInfo:
    if not isinstance(name, str) or not name:
        raise FormatError(f"{what} must be a time zone name such as 'Europe/Berlin' or 'UTC', not {name!r}")
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        raise FormatError(
            f"unknown time zone {name!r} for {what}: use an IANA name such as 'Europe/Berlin', "
            f"'America/New_York' or 'UTC'"
        ) from None


def _show(value: Any) -> str:
    """A value for a message: text quoted, dates in ISO, others with their type."""
    if isinstance(value, str):
        return repr(value)
    if isinstance(value, (date, time)):
        return str(value)
    if isinstance(value, Decimal):
        return repr(value)
    return f"{value!r} ({type(value).__name__})"


class DateFormat:
    """Dates, times or datetimes as text, by a strftime format. See :func:`date_format`."""

    __slots__ = (
        "format", "kind", "timezone", "description", "reversible", "why",
        "truncate", "_zone", "_has_z", "_type", "_plain", "_naive", "_render", "_fast", "_build", "_kind_name",
        "_tzs", "_dropped", "_loses",
    )

    def __init__(self, fmt: str, kind: Kind = "auto", timezone: str | None = None, *, truncate: bool = False) -> None:
        if not isinstance(fmt, str) or not fmt:
            raise FormatError(f"a date format must be a non-empty strftime format such as '%m/%d/%Y', not {fmt!r}")
        tokens = _tokens(fmt)
        directives = [text for is_directive, text in tokens if is_directive]
        used = set(directives)
        has_date = bool(used & _DATE_DIRECTIVES)
        has_time = bool(used & _TIME_DIRECTIVES)
        if kind == "auto":
            kind = "datetime" if has_date and has_time else "date" if has_date else "time"
        elif kind not in ("date", "time", "datetime"):
            raise FormatError(
                f"unknown kind {kind!r} for date format {fmt!r}: use 'auto', 'date', 'time' or 'datetime'"
            )
        if kind == "date" and not has_date:
            raise FormatError(f"date format {fmt!r} has no date directive (%Y, %m, %d, …), so it cannot hold a date")
        if kind == "time" and has_date:
            bad = " ".join(f"%{d}" for d in directives if d in _DATE_DIRECTIVES)
            raise FormatError(f"time format {fmt!r} has date directives ({bad}), which a time does not have")
        if kind == "date" and used & {"z", "Z"}:
            raise FormatError(f"date format {fmt!r} has a time zone directive (%z/%Z), which a date does not have")
        self.format = fmt
        self.kind: Literal["date", "time", "datetime"] = kind
        self.timezone = timezone
        self._zone: ZoneInfo | None = None
        if timezone is not None:
            if kind != "datetime":
                raise FormatError(
                    f"timezone={timezone!r} applies to datetimes only, but {fmt!r} is a {kind} format"
                )
            self._zone = _zone(timezone, f"date format {fmt!r}")
        self._has_z = "z" in used
        self._kind_name = f"{kind} format {fmt}"
        self._type: Any = _TYPES[kind]
        # the values to_target can format without any conversion
        self._plain = self._zone is None and not self._has_z
        self._naive = kind != "date"  # a plain time or datetime must also be naive
        # the time fields finer than the format's finest: they must be zero, or truncate=True
        self.truncate = truncate
        self._dropped: tuple[str, ...] = ()
        if kind != "date":
            for attribute, writers in _UNITS:
                if used & writers:
                    break
                self._dropped += (attribute,)
        self._loses = _LOSES[len(self._dropped)] if not truncate else None
        self._render = self._formatter(tokens)
        self._tzs: dict[str, dt_timezone] = {}
        self._fast: Callable[[str], re.Match[str] | None] | None = None
        self._build: Callable[[re.Match[str]], Any] | None = None
        self._compile_fast(tokens, used)
        where = f" in {timezone}" if timezone is not None else ""
        self.description = f"{kind} as text {fmt!r}{where}"
        self.reversible, self.why = self._probe()

    def __repr__(self) -> str:
        return f"<DateFormat {self.description}>"

    # -- construction ---------------------------------------------------------------------

    # The formatter and the fast parser are small functions generated from the tokens: a
    # %-template over attribute reads, and int() over regex groups into one constructor call,
    # about twice as fast as str.format / itemgetter plumbing. The generated source contains
    # only names from the fixed directive tables, group indices and repr() of literal text.

    def _formatter(self, tokens: list[tuple[bool, str]]) -> Callable[[Any], str]:
        """A function writing the value like strftime would, but zero-padding every year."""
        own = {"date": _DATE_ATTRIBUTES, "time": _TIME_ATTRIBUTES, "datetime": frozenset(_ATTRIBUTES)}[self.kind]
        template, arguments = [], []
        for is_directive, text in tokens:
            if not is_directive:
                template.append(text.replace("%", "%%"))
            elif text in own:
                attribute, spec = _ATTRIBUTES[text]
                template.append(f"%{spec}")
                arguments.append(f"v.{attribute}")
            else:
                template.append("%s")
                arguments.append(f"format(v, {'%' + text!r})")  # one directive through strftime
        source = f"lambda v: {''.join(template)!r} % ({', '.join(arguments)},)"
        formatter: Callable[[Any], str] = eval(source, {})
        return formatter

    def _compile_fast(self, tokens: list[tuple[bool, str]], used: set[str]) -> None:
        directives = [text for is_directive, text in tokens if is_directive]
        if not used <= set(_FAST) or len(directives) != len(used):
            return  # names, 12-hour clocks, week numbers, a field twice: strptime reads those
        pattern = "".join(f"({_FAST[text]})" if is_directive else re.escape(text) for is_directive, text in tokens)
        self._fast = re.compile(pattern).fullmatch
        position = {d: i for i, d in enumerate(directives)}
        fields = [f"int(g[{position[f]}])" if f in position else default for f, default in zip(_FIELDS, _DEFAULTS)]
        zone = f", tzinfo=offset(g[{position['z']}])" if "z" in position else ""
        kind = self.kind
        if kind == "date" and not used & set("HMSfz"):
            call = f"date({', '.join(fields[:3])})"
        elif kind == "time":
            call = f"time({', '.join(fields[3:])}{zone})"
        else:  # a date format with time fields is read whole, so the time is checked too
            call = f"datetime({', '.join(fields)}{zone})" + (".date()" if kind == "date" else "")
        namespace: dict[str, Any] = {
            "date": date, "time": time, "datetime": datetime, "offset": self._offset,
        }
        exec(f"def build(m):\n    g = m.groups()\n    return {call}\n", namespace)
        self._build = namespace["build"]

    def _offset(self, text: str) -> dt_timezone:
        tz = self._tzs.get(text)
        if tz is None:
            minutes = int(text[1:3]) * 60 + int(text[3:5])
            tz = dt_timezone(timedelta(minutes=-minutes if text[0] == "-" else minutes))
            if len(self._tzs) < 256:
                self._tzs[text] = tz
        return tz

    def _probes(self) -> list[Any]:
        if self.kind == "date":
            return [date(2024, 11, 23), date(1901, 2, 3), date(1999, 12, 31)]
        values: list[Any]
        if self.kind == "time":
            values = [time(17, 45, 56, 123456), time(4, 5, 6, 7)]
        else:
            values = [datetime(2024, 11, 23, 17, 45, 56, 123456), datetime(2099, 2, 3, 4, 5, 6, 7)]
        if not self.truncate:
            values = [v.replace(**dict.fromkeys(self._dropped, 0)) for v in values]
        if self._zone is not None:
            return [v.replace(tzinfo=UTC) for v in values]
        if self._has_z:
            zones = [dt_timezone(timedelta(hours=5, minutes=30)), dt_timezone(timedelta(hours=-8))]
            return [v.replace(tzinfo=tz) for v, tz in zip(values, zones)]
        return values

    def _probe(self) -> tuple[bool, str | None]:
        for value in self._probes():
            try:
                text = self.to_target(value)
            except ValueFormatError as e:
                return False, f"{self.format!r} cannot write every {self.kind}: {e}"
            lossy = f"{self.format!r} does not keep a whole {self.kind}: {value} becomes {text!r}"
            try:
                back = self.to_source(text)
            except ValueFormatError as e:
                return False, f"{lossy}, which cannot be read back ({e})"
            if back != value or type(back) is not type(value):
                return False, f"{lossy}, which reads back as {back}"
        if self._zone is not None and not self._has_z and _sets_clocks_back(self._zone):
            return False, (
                f"{self.timezone} has set its clocks back (when daylight saving time ends, or to a new "
                f"standard time), so a wall time in {self.format!r} can be either of two instants and reads "
                f"back as the first; add %z to the format to keep the offset"
            )
        return True, None

    # -- per value ------------------------------------------------------------------------

    def to_target(self, value: Any) -> Any:
        if value is None:
            return None
        if type(value) is not self._type or not self._plain or (self._naive and value.tzinfo is not None):
            value = self._coerce(value)
        if self._loses is not None and self._loses(value):
            unit, hint = _UNIT_NAMES[self._dropped[-1]]
            raise ValueFormatError(
                f"{value} has {unit}, which the {self._kind_name} does not keep; add {hint} to the "
                f"format (or set truncate=True to drop such parts)"
            )
        return self._render(value)

    def _coerce(self, value: Any) -> Any:
        """The value as the kind's type, in the right zone, or ValueFormatError."""
        kind = self.kind
        if isinstance(value, str):
            try:
                parsed: Any = _TYPES[kind].fromisoformat(value)
            except ValueError:
                raise ValueFormatError(
                    f"{value!r} is not an ISO {kind}: the {self._kind_name} takes a {kind} "
                    f"or ISO text such as {_ISO_EXAMPLE[kind]}"
                ) from None
            value = parsed
        if kind == "date":
            if type(value) is date:
                return value
            if isinstance(value, date) and not isinstance(value, datetime):
                return date(value.year, value.month, value.day)
            if isinstance(value, datetime):
                raise ValueFormatError(
                    f"{value} is a datetime, but the {self._kind_name} keeps only the date; "
                    f"use a format with the time (or kind='datetime')"
                )
        elif kind == "time":
            if isinstance(value, time):
                return self._with_offset(value)
        else:
            if isinstance(value, datetime):
                return self._with_offset(value)
            if isinstance(value, date):
                return self._with_offset(datetime(value.year, value.month, value.day))
        raise ValueFormatError(
            f"{_show(value)} is not a {kind}: the {self._kind_name} takes a {kind} "
            f"or ISO text such as {_ISO_EXAMPLE[kind]}"
        )

    def _with_offset(self, value: Any) -> Any:
        zone = self._zone
        if zone is not None:
            if value.tzinfo is None:
                return value.replace(tzinfo=zone) if self._has_z else value
            try:
                return value.astimezone(zone)
            except OverflowError:
                raise ValueFormatError(f"{value} is out of range in {self.timezone}") from None
        if self._has_z:
            if value.utcoffset() is None:
                raise ValueFormatError(
                    f"{value} has no UTC offset for %z in the {self._kind_name}; "
                    f"give the format a timezone to say which zone naive values are in"
                )
        elif value.tzinfo is not None:
            raise ValueFormatError(
                f"{value} has a UTC offset, which the {self._kind_name} would drop; "
                f"add %z to the format or give it a timezone to write the values in"
            )
        return value

    def to_source(self, value: Any) -> Any:
        if value is None:
            return None
        if type(value) is not str:
            example = self._render(self._probes()[0])
            raise ValueFormatError(f"{_show(value)} is not text: the {self._kind_name} reads text such as {example!r}")
        m = self._fast(value) if self._fast is not None else None
        if m is not None:
            try:
                result = self._build(m)  # type: ignore[misc]  # set together with _fast
            except ValueError:
                raise ValueFormatError(f"{value!r} does not match the {self._kind_name}") from None
        else:
            result = self._parse(value)
        if self._zone is not None:
            if result.tzinfo is None:
                result = result.replace(tzinfo=self._zone)
            try:
                result = result.astimezone(UTC)
            except OverflowError:
                raise ValueFormatError(f"{value!r} in {self.timezone} is out of range in UTC") from None
        return result

    def _parse(self, value: str) -> Any:
        """The slow path: datetime.strptime."""
        try:
            parsed = datetime.strptime(value, self.format)
        except ValueError:
            raise ValueFormatError(f"{value!r} does not match the {self._kind_name}") from None
        if self.kind == "date":
            return parsed.date()
        if self.kind == "time":
            return parsed.timetz()
        return parsed


def date_format(fmt: str, kind: Kind = "auto", timezone: str | None = None, *, truncate: bool = False) -> DateFormat:
    """Dates, times or datetimes as text, written with strftime ``fmt`` and read back with it.

    ``kind`` is the type ``to_source`` returns; ``"auto"`` decides from the directives: only
    date directives give a :class:`date`, only time ones a :class:`time`, both a
    :class:`datetime`. ``to_target`` takes that type or ISO text (``'2024-01-01'``); a
    datetime format also takes a date (as midnight). ``timezone`` (an IANA name, datetimes
    only): see the module's notes on time zones.

    A time or datetime with a non-zero part finer than the format keeps (microseconds for
    ``'%H:%M:%S'``, the time of day for a datetime as ``'%Y-%m-%d'``) is refused, so nothing is
    lost silently; ``truncate=True`` drops it instead (and the format is not reversible).

    >>> f = date_format("%m/%d/%Y")
    >>> f.to_target(date(2024, 1, 1)), f.to_source("01/01/2024")
    ('01/01/2024', datetime.date(2024, 1, 1))
    """
    return DateFormat(fmt, kind, timezone, truncate=truncate)


class TimezoneShift:
    """Wall time in one zone as wall time in another. See :func:`timezone_shift`."""

    __slots__ = ("from_tz", "to_tz", "description", "reversible", "why", "_from", "_to")

    def __init__(self, from_tz: str, to_tz: str) -> None:
        self._from = _zone(from_tz, "the source time zone")
        self._to = _zone(to_tz, "the target time zone")
        self.from_tz, self.to_tz = from_tz, to_tz
        self.description = f"local time in {from_tz} as local time in {to_tz}"
        self.reversible, self.why = True, None
        if self._from != self._to and _sets_clocks_back(self._to):
            self.reversible = False
            self.why = (
                f"{to_tz} has set its clocks back (when daylight saving time ends, or to a new standard time), so two "
                f"different times in {from_tz} can become the same local time in {to_tz}, which reads "
                f"back as the first of them"
            )

    def __repr__(self) -> str:
        return f"<TimezoneShift {self.description}>"

    @staticmethod
    def _shift(value: Any, source: ZoneInfo, target: ZoneInfo, name: str) -> datetime:
        if not isinstance(value, datetime):
            raise ValueFormatError(f"{_show(value)} is not a datetime, so it cannot be moved to {name}")
        try:
            if value.tzinfo is None:
                value = value.replace(tzinfo=source)
            shifted: datetime = value.astimezone(target).replace(tzinfo=None)
            return shifted
        except OverflowError:
            raise ValueFormatError(f"{value} is out of range when moved to {name}") from None

    def to_target(self, value: Any) -> Any:
        """A naive value is wall time in ``from_tz``; an aware one is any instant. Returns naive
        wall time in ``to_tz``."""
        if value is None:
            return None
        return self._shift(value, self._from, self._to, self.to_tz)

    def to_source(self, value: Any) -> Any:
        """A naive value is wall time in ``to_tz``. Returns naive wall time in ``from_tz``."""
        if value is None:
            return None
        return self._shift(value, self._to, self._from, self.from_tz)


def timezone_shift(from_tz: str, to_tz: str) -> TimezoneShift:
    """Naive wall time in ``from_tz`` ↔ naive wall time in ``to_tz`` (aware inputs are converted
    from whatever offset they carry). A wall time becomes an instant by its ``fold`` (0 for
    values read from databases): an ambiguous time is its first occurrence, a time skipped by a
    clock change is read with the offset before the gap (it moves forward by the gap).
    """
    return TimezoneShift(from_tz, to_tz)


# ---------------------------------------------------------------------------------------------
# amounts
# ---------------------------------------------------------------------------------------------

# Exact decimal arithmetic: no rounding ever happens silently, it raises Inexact.
_EXACT = Context(prec=MAX_PREC, Emax=MAX_EMAX, Emin=MIN_EMIN, traps=[InvalidOperation, Inexact])
_INTEGER = re.compile(r"[+-]?[0-9]+").fullmatch
_DECIMAL = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)").fullmatch


def _amount(value: Any, what: str) -> Decimal:
    """A Decimal from a Decimal, int or decimal text, never through float."""
    if type(value) is Decimal:
        result = value
    elif isinstance(value, int) and not isinstance(value, bool):
        result = Decimal(value)
    elif isinstance(value, str) and _DECIMAL(value.strip()):
        result = Decimal(value.strip())
    elif isinstance(value, Decimal):
        result = Decimal(value)
    elif isinstance(value, float):
        raise ValueFormatError(
            f"{value!r} is a float, which is not exact: {what} takes a Decimal, an int or decimal text"
        )
    else:
        raise ValueFormatError(f"{_show(value)} is not an amount: {what} takes a Decimal, an int or decimal text")
    if not result.is_finite():
        raise ValueFormatError(f"{value} is not a finite amount, which {what} cannot hold")
    return result


class MinorUnits:
    """An integer count of minor units (cents) as a Decimal amount. See :func:`minor_units`."""

    __slots__ = ("digits", "description", "reversible", "why", "_what")

    def __init__(self, digits: int | None = None, currency: str | None = None) -> None:
        if currency is not None:
            code = _currency(currency)
            natural = get_currency_precision(code)
            if digits is None:
                digits = natural
        elif digits is None:
            digits = 2
        if not isinstance(digits, int) or isinstance(digits, bool) or not 0 <= digits <= 18:
            raise FormatError(f"minor units need a number of digits from 0 to 18, not {digits!r}")
        self.digits = digits
        self.description = f"integer minor units (1/{10 ** digits}) as a decimal amount"
        self.reversible, self.why = True, None
        self._what = f"minor units with {digits} digit{'s' if digits != 1 else ''}"

    def __repr__(self) -> str:
        return f"<MinorUnits {self.description}>"

    def to_target(self, value: Any) -> Any:
        """123456 → Decimal('1234.56')."""
        if value is None:
            return None
        if type(value) is not int:
            if isinstance(value, str) and _INTEGER(value.strip()):
                value = int(value)
            elif isinstance(value, Decimal) and value.is_finite() and value == value.to_integral_value():
                value = int(value)
            elif isinstance(value, int) and not isinstance(value, bool):
                value = int(value)
            else:
                raise ValueFormatError(
                    f"{_show(value)} is not a whole number of minor units: {self._what} takes an int"
                )
        return Decimal(value).scaleb(-self.digits, _EXACT)

    def to_source(self, value: Any) -> Any:
        """Decimal('1234.56') → 123456; refuses Decimal('1234.565')."""
        if value is None:
            return None
        amount = _amount(value, self._what)
        units = amount.scaleb(self.digits, _EXACT)
        if units != units.to_integral_value(context=_EXACT):
            raise ValueFormatError(
                f"{amount} has more than {self.digits} fraction digit{'s' if self.digits != 1 else ''}, "
                f"so it is not a whole number of minor units: {self._what} cannot store it exactly"
            )
        return int(units)


def minor_units(digits: int | None = None, *, currency: str | None = None) -> MinorUnits:
    """An integer amount in minor units ↔ a Decimal: ``123456`` ↔ ``Decimal('1234.56')``.

    ``digits`` (default 2, or the currency's, e.g. 0 for ``currency="JPY"``) is the number of
    fraction digits. ``to_source`` refuses amounts that are not a whole number of minor units.
    """
    return MinorUnits(digits, currency)


def _currency(currency: str) -> str:
    code = currency.strip().upper() if isinstance(currency, str) else ""
    try:
        validate_currency(code)
    except UnknownCurrencyError:
        raise FormatError(
            f"unknown currency {currency!r}: use an ISO 4217 code such as 'EUR', 'USD' or 'JPY'"
        ) from None
    return code


def _locale(name: str) -> Locale:
    try:
        if not isinstance(name, str):
            raise TypeError(name)
        return Locale.parse(name.strip().replace("-", "_"))
    except (UnknownLocaleError, ValueError, TypeError):
        raise FormatError(
            f"unknown locale {name!r}: use a CLDR locale such as 'de_DE', 'en_US' or 'fr_CH' "
            f"(babel.localedata.locale_identifiers() lists them)"
        ) from None


# Characters written as, or between, separators: all read as one plain space.
_SPACES = "\u0020\u00a0\u202f\u2009\u2007\u2002\u2003\u2008\u200a\u205f\u3000"
# Direction marks the CLDR patterns of right-to-left locales carry: ignored when reading.
_MARKS = "\u200e\u200f\u061c"
_READ = str.maketrans({**{c: " " for c in _SPACES}, **{c: None for c in _MARKS}})
_MINUS = "-\u2212\u2012\u2013\ufe63\uff0d"


def _unquote(text: str) -> str:
    """CLDR pattern literal text: 'x' quotes x, '' is an apostrophe (as babel does)."""
    return re.sub(r"'([^']*)'", lambda m: m.group(1) or "'", text)


class CurrencyText:
    """A Decimal amount as locale-formatted text. See :func:`currency_text`."""

    __slots__ = (
        "locale", "currency", "digits", "pattern", "description", "reversible", "why",
        "_prefix", "_suffix", "_quantum", "_table", "_group", "_grouping", "_decimal", "_min_int", "_threes",
        "_read", "_what", "_symbols", "_example",
    )

    def __init__(
        self,
        locale: str,
        currency: str | None = None,
        *,
        digits: int | None = None,
        pattern: str | None = None,
        accounting: bool = False,
        plain_spaces: bool = False,
    ) -> None:
        loc = _locale(locale)
        self.locale = str(loc)
        code = _currency(currency) if currency is not None else None
        self.currency = code
        if digits is None and code is not None:
            digits = get_currency_precision(code)
        if digits is not None and (not isinstance(digits, int) or isinstance(digits, bool) or not 0 <= digits <= 18):
            raise FormatError(f"currency text needs a number of fraction digits from 0 to 18, not {digits!r}")
        self.digits = digits
        if accounting and code is None:
            raise FormatError("accounting=True needs a currency: the accounting style is a currency format")
        number = parse_pattern(self._pattern(loc, code, pattern, accounting))
        self.pattern = number.pattern
        symbols = loc.number_symbols["latn"]
        symbol = get_currency_symbol(code, loc) if code is not None else ""

        def text(written: str) -> str:
            return written.replace("\u00a0", " ").replace("\u202f", " ") if plain_spaces else written

        def affix(written: str) -> str:
            if code is not None:
                written = written.replace("¤¤", code).replace("¤", symbol)
            return text(_unquote(written))

        self._prefix = (affix(number.prefix[0]), affix(number.prefix[1]))
        self._suffix = (affix(number.suffix[0]), affix(number.suffix[1]))
        group, decimal_symbol = text(symbols["group"]), text(symbols["decimal"])
        self._group, self._decimal = group, decimal_symbol
        self._grouping = number.grouping
        self._min_int = number.int_prec[0]
        self._threes = number.grouping == (3, 3) and self._min_int <= 1  # what format(d, ",f") writes
        self._table = str.maketrans({",": group, ".": decimal_symbol})
        self._quantum = Decimal(1).scaleb(-digits) if digits is not None else None
        self._what = (
            f"{self.locale} currency text in {code}" if code is not None else f"{self.locale} number text"
        )
        # the parser: optional parentheses, sign, symbol or code, before or after the number
        read_group = group.translate(_READ)
        read_decimal = decimal_symbol.translate(_READ)
        local_minus = text(symbols["minusSign"]).translate(_READ)
        minus = _MINUS + "".join(c for c in local_minus if c not in _MINUS and not c.isspace())
        g1, g2 = number.grouping
        integer = "[0-9]+"
        if g1 < 100 and read_group:
            g = re.escape(read_group)
            integer = f"[0-9]+|[0-9]{{1,{g2}}}(?:{g}[0-9]{{{g2}}})*{g}[0-9]{{{g1}}}"
        sign = f"([{re.escape(minus)}+])?"
        self._symbols: tuple[str, ...] = ()
        if code is not None:
            names = {s for s in (symbol.translate(_READ).strip(), code) if s}
            self._symbols = tuple(sorted(names, key=len, reverse=True))
            sym = "(" + "|".join(re.escape(s) for s in self._symbols) + ")?"
        else:
            sym = "()?"
        digits_re = rf"({integer})(?:{re.escape(read_decimal)}([0-9]+))?"
        self._read = re.compile(rf" *(\()? *{sign} *{sym} *{sign} *{digits_re} *{sym} *{sign} *(\))? *").fullmatch
        self._example = self.to_target(Decimal(("1234", "1234.5", "1234.56")[min(2, 2 if digits is None else digits)]))
        self.description = f"{self._what}, e.g. {self._example!r}"
        self.reversible, self.why = True, None

    @staticmethod
    def _pattern(loc: Locale, code: str | None, pattern: str | None, accounting: bool) -> NumberPattern:
        if pattern is None:
            chosen: NumberPattern
            if code is None:
                chosen = loc.decimal_formats[None]
            else:
                chosen = loc.currency_formats["accounting" if accounting else "standard"]
            return chosen
        if not isinstance(pattern, str):
            raise FormatError(f"a number pattern must be text such as '#,##0.00 ¤', not {pattern!r}")
        try:
            parsed = parse_pattern(pattern)
        except ValueError:
            parsed = None
        if parsed is None or not parsed.number_pattern:
            raise FormatError(
                f"number pattern {pattern!r} has no number in it: write it like '#,##0.00 ¤' (CLDR syntax)"
            )
        bad = [what for what, found in (
            ("scientific notation (E)", parsed.exp_prec is not None), ("significant digits (@)", "@" in pattern),
            ("a percent or per-mille sign", parsed.scale != 0), ("the currency name (¤¤¤)", "¤¤¤" in pattern),
        ) if found]
        if "¤" in pattern and code is None:
            bad.append("a currency sign (¤) without a currency")
        if bad:
            raise FormatError(f"number pattern {pattern!r} uses {', '.join(bad)}, which currency text does not support")
        return parsed

    def __repr__(self) -> str:
        return f"<CurrencyText {self.description}>"

    def to_target(self, value: Any) -> Any:
        """Decimal('1234.56') → '1.234,56\\xa0€' (de_DE, EUR)."""
        if value is None:
            return None
        amount = value if type(value) is Decimal and value.is_finite() else _amount(value, self._what)
        quantum = self._quantum
        if quantum is not None:
            try:
                amount = amount.quantize(quantum, context=_EXACT)
            except (Inexact, InvalidOperation):
                places = -amount.normalize(_EXACT).as_tuple().exponent  # type: ignore[operator]
                raise ValueFormatError(
                    f"{value} has {places} fraction digits, but {self._what} has {self.digits}; "
                    f"amounts are never rounded"
                ) from None
        negative = amount < 0
        if self._threes:
            digits = f"{amount.copy_abs():,f}"
            if quantum is None and "." in digits:
                digits = digits.rstrip("0").rstrip(".")
            number = digits.translate(self._table)
        else:
            whole, _, fraction = f"{amount.copy_abs():f}".partition(".")
            if quantum is None:
                fraction = fraction.rstrip("0")
            number = self._group_digits(whole.zfill(self._min_int)) + (self._decimal + fraction if fraction else "")
        return self._prefix[negative] + number + self._suffix[negative]

    def _group_digits(self, whole: str) -> str:
        size, later = self._grouping
        grouped = ""
        while len(whole) > size:
            grouped = self._group + whole[-size:] + grouped
            whole = whole[:-size]
            size = later
        return whole + grouped

    def to_source(self, value: Any) -> Any:
        """'1.234,56 €' → Decimal('1234.56') (de_DE, EUR)."""
        if value is None:
            return None
        if type(value) is not str:
            raise ValueFormatError(f"{_show(value)} is not text: {self._what} reads text such as {self._example!r}")
        m = self._read(value.translate(_READ))
        if m is None:
            raise ValueFormatError(self._unreadable(value))
        opening, sign1, symbol1, sign2, whole, fraction, symbol2, sign3, closing = m.groups()
        signs = [s for s in (sign1, sign2, sign3) if s]
        if (opening is None) != (closing is None):
            raise ValueFormatError(f"{value!r} is not {self._what}: its parentheses are unbalanced")
        if len(signs) + bool(opening) > 1:
            raise ValueFormatError(f"{value!r} is not {self._what}: it has more than one sign")
        if symbol1 and symbol2:
            raise ValueFormatError(f"{value!r} is not {self._what}: it has the currency twice")
        fraction = fraction or ""
        digits = self.digits
        if digits is not None:
            if len(fraction) > digits:
                raise ValueFormatError(
                    f"{value!r} has {len(fraction)} fraction digits, but {self._what} has {digits}; "
                    f"amounts are never rounded"
                )
            fraction = fraction.ljust(digits, "0")
        negative = bool(opening) or (bool(signs) and signs[0] != "+")
        text = ("-" if negative else "") + whole.replace(" ", "").replace(self._group.translate(_READ), "")
        return Decimal(f"{text}.{fraction}" if fraction else text)

    def _unreadable(self, value: str) -> str:
        """Why a text does not parse, as precisely as can be said."""
        text = value.translate(_READ)
        for symbol in self._symbols:
            text = text.replace(symbol, " ", 1)
        allowed = set("0123456789 ()+" + _MINUS + self._group.translate(_READ) + self._decimal.translate(_READ))
        stray = "".join(dict.fromkeys(c for c in text if c not in allowed))
        if stray:
            if self.currency is None:
                expected = "expected a number without a currency symbol"
            elif len(self._symbols) > 1:
                symbol = next(s for s in self._symbols if s != self.currency)
                expected = f"expected the symbol {symbol!r}, the code {self.currency!r} or no symbol"
            else:
                expected = f"expected {self.currency!r} or no symbol"
            return f"{value!r} is not {self._what}: unexpected {stray!r}; {expected}"
        number = text.strip(" ()+" + _MINUS)
        detail = ""
        try:
            if number:
                parse_decimal(number, self.locale, strict=True)
        except NumberFormatError as e:
            detail = f" ({e})"
        return f"{value!r} is not {self._what}, which looks like {self._example!r}{detail}"


def currency_text(
    locale: str,
    currency: str | None = None,
    *,
    digits: int | None = None,
    pattern: str | None = None,
    accounting: bool = False,
    plain_spaces: bool = False,
) -> CurrencyText:
    """A Decimal amount ↔ text as a locale writes it: ``Decimal('1234.56')`` ↔ ``'1.234,56 €'``.

    ``currency`` (ISO 4217) adds its symbol and fixes the fraction digits (``digits`` overrides
    them); without it, the text is a plain locale number (``'1.234,56'``) with as many fraction
    digits as the value needs, unless ``digits`` is given. ``accounting=True`` writes negative
    amounts in parentheses where the locale does (en_US ``'($1,234.56)'``); ``pattern`` is a
    CLDR number pattern overriding the locale's (``'#,##0.00 ¤'``); ``plain_spaces=True`` writes
    normal spaces where babel writes no-break ones. Reading accepts all of these forms.
    """
    return CurrencyText(
        locale, currency, digits=digits, pattern=pattern, accounting=accounting, plain_spaces=plain_spaces
    )
