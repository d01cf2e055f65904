"""Compile SQL expressions from the config into fast Python callables.

Row filters, computed columns and validation rules are written in SQL
(``status <> 'draft' AND country IN ('DE', 'FR')``).  :func:`compile_expr`
parses such an expression once with sqlglot, generates Python source text
from the syntax tree, and ``compile()``\\ s it into a plain function that is
then called once per row, with no tree walking and no interpretation on the
hot path.  Common cases are inlined with a type-guarded fast path (e.g. a
comparison with a string literal is ``v != c if v.__class__ is str else
slow(v, c)``; an ``IN`` list of literals is a frozenset membership test);
everything unusual goes through small helper functions.

Supported
    Column names, literals (text, integer, decimal, TRUE/FALSE/NULL),
    ``+ - * / %`` and unary minus, ``= <> != < <= > >=``, AND/OR/NOT,
    [NOT] IN, [NOT] BETWEEN, IS [NOT] NULL/TRUE/FALSE, IS [NOT] DISTINCT
    FROM, [NOT] LIKE/ILIKE [ESCAPE], CASE (searched and simple), ``||``,
    CAST(x AS type) and ``x::type`` (text/varchar/char, smallint/int/bigint,
    numeric/decimal, real/double, boolean, date, timestamp) and the functions
    in :data:`SUPPORTED_FUNCTIONS`.  Anything else (subqueries, aggregates,
    window functions, other functions) is a compile-time :class:`ExprError`.

Parsing
    The PostgreSQL dialect, extended so that MySQL-style backtick quoting
    (`` `firstName` ``) is accepted as well: a config may be written for either
    database, and using one dialect everywhere keeps the meaning of ``||``
    (concatenation, not MySQL's OR) and of ``"x"`` (an identifier, not a
    string) stable.  Quoted names must match a column exactly.  Unquoted names
    match a column exactly first, then case-insensitively if exactly one
    column matches (SQL would fold ``firstName`` to ``firstname``, which is
    never what a config author means); several matches is an error.

Semantics (SQL, not Python, because users write SQL)
    * NULL is ``None``.  Arithmetic, comparisons and functions return NULL
      when an argument is NULL (except COALESCE, CONCAT, IS [NOT] NULL,
      IS [NOT] DISTINCT FROM).  ``AND``/``OR``/``NOT`` use three-valued logic:
      ``FALSE AND NULL`` is FALSE, ``TRUE OR NULL`` is TRUE, ``NOT NULL`` is
      NULL; ``x IN (1, NULL)`` is TRUE if x = 1, else NULL.  AND/OR/CASE/
      COALESCE evaluate lazily, so ``d <> 0 AND n / d > 1`` is safe.
    * A filter or validation passes only when the result *is* TRUE
      (:meth:`Expr.test`, :func:`is_true`); NULL does not pass, as in WHERE.
    * Integer literals are ``int``; decimal literals (``100.0``, ``1e3``) are
      ``decimal.Decimal`` so money stays exact (``1999 / 100.0`` is
      ``Decimal('19.99')``).  ``int / int`` truncates toward zero and ``%``
      takes the sign of the dividend, as in PostgreSQL.  With a Decimal
      operand the result is Decimal: ``+ - *`` are exact, ``/`` is rounded
      to 40 significant digits (a private decimal context; the global one is
      never touched).  A float operand makes the result float.  Division by
      zero raises :class:`ExprEvalError`.
    * Numbers of different Python types (int, Decimal, float) compare by
      value (a Decimal compared with a float is converted to float, as
      PostgreSQL does).  A bool compares with an int as 0/1, because MySQL's
      BOOLEAN is TINYINT(1); in boolean contexts (AND, OR, NOT, WHEN) an int
      counts as ``value != 0`` for the same reason.
    * Comparing text with a number raises :class:`ExprEvalError`: guessing
      (MySQL converts, PostgreSQL refuses) hides config mistakes.
    * A string compared with a date/datetime/time/UUID value is converted to
      that type (``birth_date >= '2000-01-01'``); a date compared with a
      datetime is taken at midnight; bytes compare as bytes (a string is
      UTF-8 encoded first).  Naive vs aware datetimes raise.
    * ``||`` returns NULL if either side is NULL (PostgreSQL); ``CONCAT``
      skips NULL arguments.  Non-text values are converted as by CAST(x AS
      text): booleans ``true``/``false``, Decimals without exponent,
      dates/times in ISO format, bytes decoded as UTF-8.
    * LIKE/ILIKE: ``%`` and ``_`` are wildcards, backslash is the default
      escape (``ESCAPE`` is supported), everything else matches literally;
      the pattern becomes a precompiled, anchored regular expression.
    * String functions count characters and use 1-based positions
      (SUBSTRING as in PostgreSQL).  TRIM removes spaces only.  ROUND of a
      Decimal rounds half away from zero.  Casts to integer round, and check
      the range of SMALLINT/INTEGER/BIGINT.
    * Every column the expression mentions is read before evaluating, so a
      row lacking one of them (e.g. a partial update) raises
      :class:`MissingColumn` deterministically, whatever the data.

Speed
    On hot paths call ``expr.fn(row)`` / ``expr.predicate(row)`` directly;
    ``expr(row)`` and ``expr.test(row)`` add a Python method call.

Safety
    User text never becomes code: literals, column names and patterns are
    passed to the generated function as closure constants; the generated
    source is checked to contain only generated names and operators (no
    string or number tokens) and runs with empty builtins.
"""

from __future__ import annotations

import datetime as _dt
import decimal
import functools
import io
import json
import keyword
import math
import operator
import re
import tokenize
import uuid
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, NoReturn

import sqlglot
from sqlglot import exp
from sqlglot.dialects.postgres import Postgres
from sqlglot.errors import ParseError, SqlglotError

__all__ = [
    "Expr",
    "ExprError",
    "ExprEvalError",
    "MissingColumn",
    "SUPPORTED_FUNCTIONS",
    "compile_expr",
    "is_true",
]


# ---------------------------------------------------------------------------
# Errors and the public result type


class ExprError(ValueError):
    """The expression cannot be compiled: syntax error, unknown column,
    unsupported construct, invalid literal."""


class ExprEvalError(ValueError):
    """Evaluating the expression on a row failed (division by zero, type
    mismatch, invalid cast).  ``sql`` is the expression, once known."""

    def __init__(self, message: str, sql: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.sql = sql

    def __str__(self) -> str:
        if self.sql is None:
            return self.message
        return f"{self.message} (in expression: {self.sql})"


class MissingColumn(ExprEvalError, KeyError):
    """The row lacks a column that the expression reads."""

    def __init__(self, column: str, sql: str | None = None) -> None:
        super().__init__(f"row has no column {column!r}", sql)
        self.column = column
        self.args = (column,)


def is_true(value: object) -> bool:
    """SQL truth of a filter result: only TRUE passes, NULL/FALSE do not."""
    return value is True


@dataclass(frozen=True)
class Expr:
    """A compiled expression.  ``fn`` is the raw per-row function (call it
    directly on hot paths); ``predicate`` is ``fn(row) is True`` compiled
    into one function."""

    sql: str
    columns: frozenset[str]
    fn: Callable[[Mapping[str, Any]], Any] = field(repr=False, compare=False)
    predicate: Callable[[Mapping[str, Any]], bool] | None = field(
        default=None, repr=False, compare=False
    )
    source: str = field(default="", repr=False, compare=False)

    def __call__(self, row: Mapping[str, Any]) -> Any:
        return self.fn(row)

    def test(self, row: Mapping[str, Any]) -> bool:
        """True only when the expression is SQL TRUE for ``row``."""
        pred = self.predicate
        if pred is not None:
            return pred(row)
        return self.fn(row) is True


# ---------------------------------------------------------------------------
# Run-time helpers (called from the generated code)

_EXACT = decimal.Context(
    prec=1000,
    rounding=decimal.ROUND_HALF_EVEN,
    Emax=decimal.MAX_EMAX,
    Emin=decimal.MIN_EMIN,
    traps=[decimal.InvalidOperation, decimal.DivisionByZero, decimal.Overflow],
)
_DIV = decimal.Context(
    prec=40,
    rounding=decimal.ROUND_HALF_EVEN,
    Emax=decimal.MAX_EMAX,
    Emin=decimal.MIN_EMIN,
    traps=[decimal.InvalidOperation, decimal.DivisionByZero, decimal.Overflow],
)
_ONE = Decimal(1)
_ZERO = Decimal(0)

_TYPE_NAMES: dict[type, str] = {
    str: "text",
    int: "integer",
    Decimal: "numeric",
    float: "double precision",
    bool: "boolean",
    bytes: "bytes",
    bytearray: "bytes",
    memoryview: "bytes",
    _dt.date: "date",
    _dt.datetime: "timestamp",
    _dt.time: "time",
    _dt.timedelta: "interval",
    uuid.UUID: "uuid",
    dict: "json",
    list: "json",
}


def _tname(v: object) -> str:
    for cls in type(v).__mro__:
        name = _TYPE_NAMES.get(cls)
        if name is not None:
            return name
    return type(v).__name__


def _show(v: object) -> str:
    text = repr(v)
    return text if len(text) <= 60 else text[:57] + "..."


def _desc(v: object) -> str:
    return f"{_tname(v)} {_show(v)}"


def _numkind(v: object) -> type | None:
    c = v.__class__
    if c is int or c is Decimal or c is float:
        return c
    if isinstance(v, bool):
        return None
    if isinstance(v, int):
        return int
    if isinstance(v, Decimal):
        return Decimal
    if isinstance(v, float):
        return float
    return None


def _coerce(a: Any, b: Any) -> tuple[Any, Any]:
    """Make two non-NULL values comparable under the rules in the module
    docstring, or raise ExprEvalError."""
    if isinstance(a, (bytearray, memoryview)):
        a = bytes(a)
    if isinstance(b, (bytearray, memoryview)):
        b = bytes(b)
    ka, kb = _numkind(a), _numkind(b)
    if ka is not None and kb is not None:
        if ka is float and kb is Decimal:
            return a, float(b)
        if ka is Decimal and kb is float:
            return float(a), b
        return a, b
    if isinstance(a, bool) or isinstance(b, bool):
        if (isinstance(a, bool) or ka is int) and (isinstance(b, bool) or kb is int):
            return int(a), int(b)
        _mismatch(a, b)
    if isinstance(a, str) and isinstance(b, str):
        return a, b
    if isinstance(a, bytes) and isinstance(b, bytes):
        return a, b
    if isinstance(a, bytes) and isinstance(b, str):
        return a, b.encode()
    if isinstance(a, str) and isinstance(b, bytes):
        return a.encode(), b
    if isinstance(b, str) and isinstance(a, (_dt.date, _dt.time, uuid.UUID)):
        b = _parse_like(b, a)
    elif isinstance(a, str) and isinstance(b, (_dt.date, _dt.time, uuid.UUID)):
        a = _parse_like(a, b)
    a_ts, b_ts = isinstance(a, _dt.datetime), isinstance(b, _dt.datetime)
    if a_ts and not b_ts and isinstance(b, _dt.date):
        b = _dt.datetime(b.year, b.month, b.day, tzinfo=a.tzinfo)
    elif b_ts and not a_ts and isinstance(a, _dt.date):
        a = _dt.datetime(a.year, a.month, a.day, tzinfo=b.tzinfo)
    if isinstance(a, _dt.datetime) and isinstance(b, _dt.datetime):
        if (a.utcoffset() is None) != (b.utcoffset() is None):
            raise ExprEvalError(
                f"cannot compare a timestamp with time zone and one without:"
                f" {_show(a)} and {_show(b)} (add a UTC offset to the literal,"
                f" e.g. '2000-01-01T00:00:00+00:00')"
            )
        return a, b
    if type(a) is type(b) or isinstance(a, type(b)) or isinstance(b, type(a)):
        return a, b
    _mismatch(a, b)


def _mismatch(a: object, b: object) -> NoReturn:
    raise ExprEvalError(f"cannot compare {_desc(a)} with {_desc(b)}")


def _parse_like(text: str, like: object) -> Any:
    """Convert ``text`` to the type of ``like`` (a date, datetime, time or
    UUID value it is compared with)."""
    kind: type
    if isinstance(like, _dt.datetime):
        kind = _dt.datetime
    elif isinstance(like, _dt.date):
        kind = _dt.date
    elif isinstance(like, _dt.time):
        kind = _dt.time
    else:
        kind = uuid.UUID
    try:
        return _parse_as(text, kind)
    except ValueError:
        raise ExprEvalError(
            f"cannot compare {_desc(like)} with {_show(text)}:"
            f" not a valid {_tname(like)}"
        ) from None


@functools.lru_cache(maxsize=1024)
def _parse_as(text: str, kind: type) -> Any:
    # Cached: the text is nearly always a literal of the expression, parsed
    # again for every row otherwise.
    s = text.strip()
    if kind is uuid.UUID:
        return uuid.UUID(s)
    return kind.fromisoformat(s)  # type: ignore[attr-defined]


# Python classes for which same-class comparison can be done natively.
_NATIVE = frozenset({str, int, Decimal, float, bool, bytes, _dt.date, _dt.time, uuid.UUID})


def _make_cmp(op: Callable[[Any, Any], Any], sym: str) -> Callable[[Any, Any], Any]:
    def cmp(a: Any, b: Any) -> Any:
        if a is None or b is None:
            return None
        if a.__class__ is not b.__class__ or a.__class__ not in _NATIVE:
            a, b = _coerce(a, b)
        try:
            return op(a, b)
        except (TypeError, ArithmeticError):
            raise ExprEvalError(
                f"cannot compare {_desc(a)} {sym} {_desc(b)}"
            ) from None

    cmp.__name__ = f"cmp_{op.__name__}"
    return cmp


_h_eq = _make_cmp(operator.eq, "=")
_h_ne = _make_cmp(operator.ne, "<>")
_h_lt = _make_cmp(operator.lt, "<")
_h_le = _make_cmp(operator.le, "<=")
_h_gt = _make_cmp(operator.gt, ">")
_h_ge = _make_cmp(operator.ge, ">=")


def _h_distinct(a: Any, b: Any) -> bool:
    if a is None or b is None:
        return (a is None) is not (b is None)
    return _h_eq(a, b) is not True


def _h_notdistinct(a: Any, b: Any) -> bool:
    return not _h_distinct(a, b)


def _h_in(x: Any, items: tuple[Any, ...]) -> Any:
    if x is None:
        return None
    saw_null = False
    for item in items:
        r = _h_eq(x, item)
        if r is True:
            return True
        if r is None:
            saw_null = True
    return None if saw_null else False


def _h_notin(x: Any, items: tuple[Any, ...]) -> Any:
    r = _h_in(x, items)
    return None if r is None else not r


def _h_not(v: Any) -> Any:
    return None if v is None else not v


def _h_b(v: Any) -> Any:
    """Check a value used as a condition: bool or NULL (or an int, as
    MySQL's BOOLEAN is TINYINT(1))."""
    if v is None or v is True or v is False:
        return v
    if isinstance(v, int) and not isinstance(v, bool):
        return v != 0
    raise ExprEvalError(f"expected a boolean condition, got {_desc(v)}")


# -- arithmetic -------------------------------------------------------------


def _numpair(a: Any, b: Any, sym: str) -> tuple[type, Any, Any]:
    ka, kb = _numkind(a), _numkind(b)
    if ka is None or kb is None:
        hint = ""
        if sym == "+" and isinstance(a, str) and isinstance(b, str):
            hint = " (use || to concatenate text)"
        raise ExprEvalError(
            f"operator {sym} needs numbers, got {_desc(a)} and {_desc(b)}{hint}"
        )
    if ka is float or kb is float:
        return float, float(a), float(b)
    if ka is Decimal or kb is Decimal:
        # Decimal context methods accept ints as they are (exactly).
        return Decimal, a if ka is Decimal else int(a), b if kb is Decimal else int(b)
    return int, int(a), int(b)


def _h_add(a: Any, b: Any) -> Any:
    if a is None or b is None:
        return None
    ca, cb = a.__class__, b.__class__
    if ca is int and cb is int:
        return a + b
    if (ca is Decimal or ca is int) and (cb is Decimal or cb is int):
        return _EXACT.add(a, b)
    k, a, b = _numpair(a, b, "+")
    return _EXACT.add(a, b) if k is Decimal else a + b


def _h_sub(a: Any, b: Any) -> Any:
    if a is None or b is None:
        return None
    ca, cb = a.__class__, b.__class__
    if ca is int and cb is int:
        return a - b
    if (ca is Decimal or ca is int) and (cb is Decimal or cb is int):
        return _EXACT.subtract(a, b)
    k, a, b = _numpair(a, b, "-")
    return _EXACT.subtract(a, b) if k is Decimal else a - b


def _h_mul(a: Any, b: Any) -> Any:
    if a is None or b is None:
        return None
    ca, cb = a.__class__, b.__class__
    if ca is int and cb is int:
        return a * b
    if (ca is Decimal or ca is int) and (cb is Decimal or cb is int):
        return _EXACT.multiply(a, b)
    k, a, b = _numpair(a, b, "*")
    return _EXACT.multiply(a, b) if k is Decimal else a * b


def _h_div(a: Any, b: Any) -> Any:
    if a is None or b is None:
        return None
    ca, cb = a.__class__, b.__class__
    k: type
    if ca is int and cb is int:
        k, x, y = int, a, b
    elif (ca is Decimal or ca is int) and (cb is Decimal or cb is int):
        k, x, y = Decimal, a, b
    else:
        k, x, y = _numpair(a, b, "/")
    if not y:
        raise ExprEvalError(f"division by zero: {_show(a)} / {_show(b)}")
    if k is int:
        q = abs(x) // abs(y)
        return -q if (x < 0) != (y < 0) else q
    if k is Decimal:
        r = _DIV.divide(x, y)
        if r.adjusted() > 0:
            # An exact quotient gets the exponent exp(x) - exp(y), which can
            # be positive: 1000 / 100.0 is 1E+1.  Adding 0 (exponent 0) gives
            # exponent min(e, 0) without changing the value: 10.
            r = _DIV.add(r, _ZERO)
        return r
    return x / y


def _h_mod(a: Any, b: Any) -> Any:
    if a is None or b is None:
        return None
    k, x, y = _numpair(a, b, "%")
    if not y:
        raise ExprEvalError(f"division by zero: {_show(a)} % {_show(b)}")
    if k is int:
        r = abs(x) % abs(y)
        return -r if x < 0 else r
    if k is Decimal:
        return _EXACT.remainder(x, y)
    return math.fmod(x, y)


def _h_neg(a: Any) -> Any:
    if a is None:
        return None
    k = _numkind(a)
    if k is None:
        raise ExprEvalError(f"unary minus needs a number, got {_desc(a)}")
    if k is Decimal:
        return a.copy_negate()
    return -a


# -- text -------------------------------------------------------------------


def _text(v: Any) -> str:
    """CAST(v AS text) for a non-NULL value."""
    if isinstance(v, str):
        return v
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(int(v))
    if isinstance(v, Decimal):
        return format(v, "f")
    if isinstance(v, float):
        if math.isnan(v):
            return "NaN"
        if math.isinf(v):
            return "Infinity" if v > 0 else "-Infinity"
        return repr(v)
    if isinstance(v, _dt.datetime):
        return v.isoformat(sep=" ")
    if isinstance(v, (_dt.date, _dt.time)):
        return v.isoformat()
    if isinstance(v, (bytes, bytearray, memoryview)):
        try:
            return bytes(v).decode()
        except UnicodeDecodeError:
            raise ExprEvalError(
                f"cannot convert bytes {_show(bytes(v))} to text: not valid UTF-8"
            ) from None
    if isinstance(v, (dict, list)):
        return json.dumps(v, ensure_ascii=False, default=str)
    return str(v)


def _h_text(v: Any) -> Any:
    return None if v is None else _text(v)


def _h_dpipe(*args: Any) -> Any:
    for a in args:
        if a is None:
            return None
    return "".join([_text(a) for a in args])


def _h_concat(*args: Any) -> str:
    return "".join([_text(a) for a in args if a is not None])


def _h_concat_ws(sep: Any, *args: Any) -> Any:
    if sep is None:
        return None
    return _text(sep).join([_text(a) for a in args if a is not None])


def _need_str(v: Any, fname: str) -> str:
    if isinstance(v, str):
        return v
    raise ExprEvalError(f"{fname}() expects text, got {_desc(v)}")


def _need_int(v: Any, fname: str) -> int:
    if _numkind(v) is int:
        return int(v)
    if isinstance(v, Decimal) and v.is_finite() and v == v.to_integral_value():
        return int(v)
    raise ExprEvalError(f"{fname}() expects an integer, got {_desc(v)}")


def _h_upper(v: Any) -> Any:
    return None if v is None else _need_str(v, "UPPER").upper()


def _h_lower(v: Any) -> Any:
    return None if v is None else _need_str(v, "LOWER").lower()


def _trim_args(s: Any, chars: Any, fname: str) -> tuple[str, str]:
    return _need_str(s, fname), _need_str(chars, fname)


def _h_btrim(s: Any, chars: Any) -> Any:
    if s is None or chars is None:
        return None
    s, chars = _trim_args(s, chars, "TRIM")
    return s.strip(chars)


def _h_ltrim(s: Any, chars: Any) -> Any:
    if s is None or chars is None:
        return None
    s, chars = _trim_args(s, chars, "LTRIM")
    return s.lstrip(chars)


def _h_rtrim(s: Any, chars: Any) -> Any:
    if s is None or chars is None:
        return None
    s, chars = _trim_args(s, chars, "RTRIM")
    return s.rstrip(chars)


def _h_length(v: Any) -> Any:
    if v is None:
        return None
    if isinstance(v, (str, bytes, bytearray, memoryview)):
        return len(v)
    raise ExprEvalError(f"LENGTH() expects text, got {_desc(v)}")


def _substr_arg(s: Any) -> Any:
    if isinstance(s, (str, bytes)):
        return s
    if isinstance(s, (bytearray, memoryview)):
        return bytes(s)
    raise ExprEvalError(f"SUBSTRING() expects text, got {_desc(s)}")


def _h_substr2(s: Any, start: Any) -> Any:
    if s is None or start is None:
        return None
    s = _substr_arg(s)
    begin = _need_int(start, "SUBSTRING")
    return s[max(begin, 1) - 1 :]


def _h_substr3(s: Any, start: Any, length: Any) -> Any:
    if s is None or start is None or length is None:
        return None
    s = _substr_arg(s)
    begin = _need_int(start, "SUBSTRING")
    n = _need_int(length, "SUBSTRING")
    if n < 0:
        raise ExprEvalError(f"negative substring length not allowed: {n}")
    end = begin + n
    return s[max(begin, 1) - 1 : max(end, 1) - 1]


def _h_replace(s: Any, old: Any, new: Any) -> Any:
    if s is None or old is None or new is None:
        return None
    s = _need_str(s, "REPLACE")
    old = _need_str(old, "REPLACE")
    new = _need_str(new, "REPLACE")
    return s.replace(old, new) if old else s


# -- numeric functions ------------------------------------------------------


def _need_num(v: Any, fname: str) -> type:
    k = _numkind(v)
    if k is None:
        raise ExprEvalError(f"{fname}() expects a number, got {_desc(v)}")
    return k


def _h_abs(v: Any) -> Any:
    if v is None:
        return None
    k = _need_num(v, "ABS")
    return v.copy_abs() if k is Decimal else abs(v)


def _h_floor(v: Any) -> Any:
    if v is None:
        return None
    k = _need_num(v, "FLOOR")
    if k is int:
        return int(v)
    if k is Decimal:
        return v if not v.is_finite() else v.to_integral_value(rounding=decimal.ROUND_FLOOR)
    return float(math.floor(v)) if math.isfinite(v) else v


def _h_ceil(v: Any) -> Any:
    if v is None:
        return None
    k = _need_num(v, "CEIL")
    if k is int:
        return int(v)
    if k is Decimal:
        return v if not v.is_finite() else v.to_integral_value(rounding=decimal.ROUND_CEILING)
    return float(math.ceil(v)) if math.isfinite(v) else v


def _round_dec(v: Decimal, n: int) -> Decimal:
    if not v.is_finite():
        return v
    r = v.quantize(Decimal((0, (1,), -n)), rounding=decimal.ROUND_HALF_UP, context=_EXACT)
    if n < 0:
        r = r.quantize(_ONE, context=_EXACT)
    return r


def _h_round1(v: Any) -> Any:
    return _h_round2(v, 0)


def _h_round2(v: Any, n: Any) -> Any:
    if v is None or n is None:
        return None
    k = _need_num(v, "ROUND")
    places = _need_int(n, "ROUND")
    if k is int:
        return int(v) if places >= 0 else int(_round_dec(Decimal(int(v)), places))
    if k is Decimal:
        return _round_dec(v, places)
    if not math.isfinite(v):
        return v
    return float(round(v, places))


# -- casts ------------------------------------------------------------------

_INT_RE = re.compile(r"\s*[+-]?[0-9]+\s*", re.ASCII)
_NUM_RE = re.compile(
    r"\s*[+-]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][+-]?[0-9]+)?\s*"
    r"|\s*(NaN|[+-]?Infinity)\s*",
    re.ASCII | re.IGNORECASE,
)
_TRUE_WORDS = frozenset({"t", "true", "y", "yes", "on", "1"})
_FALSE_WORDS = frozenset({"f", "false", "n", "no", "off", "0"})


def _bad_cast(v: Any, target: str) -> NoReturn:
    raise ExprEvalError(f"cannot cast {_desc(v)} to {target}")


def _h_cast_int(v: Any, lo: int, hi: int, target: str) -> Any:
    if v is None:
        return None
    if isinstance(v, bool):
        r = int(v)
    elif isinstance(v, int):
        r = int(v)
    elif isinstance(v, Decimal):
        if not v.is_finite():
            _bad_cast(v, target)
        r = int(v.to_integral_value(rounding=decimal.ROUND_HALF_UP))
    elif isinstance(v, float):
        if not math.isfinite(v):
            _bad_cast(v, target)
        r = round(v)
    elif isinstance(v, str):
        if _INT_RE.fullmatch(v) is None:
            raise ExprEvalError(f"invalid input syntax for type {target}: {_show(v)}")
        r = int(v)
    else:
        _bad_cast(v, target)
    if not lo <= r <= hi:
        raise ExprEvalError(f"{target} out of range: {r}")
    return r


def _h_cast_num(v: Any, precision: int | None, scale: int | None) -> Any:
    if v is None:
        return None
    if isinstance(v, bool):
        _bad_cast(v, "numeric")
    if isinstance(v, Decimal):
        r = v
    elif isinstance(v, int):
        r = Decimal(int(v))
    elif isinstance(v, float):
        r = Decimal(repr(v)) if math.isfinite(v) else Decimal(v)
    elif isinstance(v, str):
        if _NUM_RE.fullmatch(v) is None:
            raise ExprEvalError(f"invalid input syntax for type numeric: {_show(v)}")
        r = Decimal(v.strip())
    else:
        _bad_cast(v, "numeric")
    if precision is not None and r.is_finite():
        s = scale or 0
        r = r.quantize(Decimal((0, (1,), -s)), rounding=decimal.ROUND_HALF_UP, context=_EXACT)
        if r and r.adjusted() >= precision - s:
            raise ExprEvalError(
                f"numeric field overflow: {_show(v)} does not fit numeric({precision},{s})"
            )
    return r


def _h_cast_float(v: Any) -> Any:
    if v is None:
        return None
    if isinstance(v, bool):
        _bad_cast(v, "double precision")
    if isinstance(v, (int, float, Decimal)):
        return float(v)
    if isinstance(v, str):
        try:
            return float(v.strip().replace("_", "!"))
        except ValueError:
            raise ExprEvalError(
                f"invalid input syntax for type double precision: {_show(v)}"
            ) from None
    _bad_cast(v, "double precision")


def _h_cast_bool(v: Any) -> Any:
    if v is None or v is True or v is False:
        return v
    if isinstance(v, int):
        return v != 0
    if isinstance(v, str):
        word = v.strip().lower()
        if word in _TRUE_WORDS:
            return True
        if word in _FALSE_WORDS:
            return False
        raise ExprEvalError(f"invalid input syntax for type boolean: {_show(v)}")
    _bad_cast(v, "boolean")


def _h_cast_text(v: Any, maxlen: int | None) -> Any:
    if v is None:
        return None
    s = _text(v)
    return s if maxlen is None else s[:maxlen]


def _h_cast_date(v: Any) -> Any:
    if v is None:
        return None
    if isinstance(v, _dt.datetime):
        return v.date()
    if isinstance(v, _dt.date):
        return v
    if isinstance(v, str):
        try:
            return _dt.date.fromisoformat(v.strip())
        except ValueError:
            raise ExprEvalError(f"invalid input syntax for type date: {_show(v)}") from None
    _bad_cast(v, "date")


def _h_cast_ts(v: Any) -> Any:
    if v is None:
        return None
    if isinstance(v, _dt.datetime):
        return v
    if isinstance(v, _dt.date):
        return _dt.datetime(v.year, v.month, v.day)
    if isinstance(v, str):
        try:
            return _dt.datetime.fromisoformat(v.strip())
        except ValueError:
            raise ExprEvalError(
                f"invalid input syntax for type timestamp: {_show(v)}"
            ) from None
    _bad_cast(v, "timestamp")


# -- LIKE -------------------------------------------------------------------


def _like_regex(pattern: str, escape: str | None, icase: bool) -> re.Pattern[str]:
    """Translate a LIKE pattern into an anchored regex (use fullmatch)."""
    out: list[str] = []
    i, n = 0, len(pattern)
    while i < n:
        ch = pattern[i]
        if escape is not None and ch == escape:
            i += 1
            if i >= n:
                raise ValueError("LIKE pattern must not end with the escape character")
            out.append(re.escape(pattern[i]))
        elif ch == "%":
            if not out or out[-1] != ".*":
                out.append(".*")
        elif ch == "_":
            out.append(".")
        else:
            out.append(re.escape(ch))
        i += 1
    return re.compile("".join(out), re.DOTALL | (re.IGNORECASE if icase else 0))


_like_regex_cached = functools.lru_cache(maxsize=256)(_like_regex)


def _h_like_slow(x: Any, regex: re.Pattern[str], negate: bool) -> Any:
    if x is None:
        return None
    if not isinstance(x, str):
        raise ExprEvalError(f"LIKE expects text, got {_desc(x)}")
    return (regex.fullmatch(x) is None) is negate


def _h_like(x: Any, pattern: Any, escape: Any, icase: bool, negate: bool) -> Any:
    """LIKE with a pattern (or escape) computed at run time."""
    if x is None or pattern is None or escape is None:
        return None
    if not isinstance(x, str) or not isinstance(pattern, str):
        raise ExprEvalError(f"LIKE expects text, got {_desc(x)} LIKE {_desc(pattern)}")
    esc = _need_str(escape, "LIKE ESCAPE")
    if len(esc) > 1:
        raise ExprEvalError(f"invalid LIKE escape string {_show(esc)}: must be one character")
    try:
        regex = _like_regex_cached(pattern, esc or None, icase)
    except ValueError as e:
        raise ExprEvalError(f"{e}: {_show(pattern)}") from None
    return (regex.fullmatch(x) is None) is negate


# -- plumbing used by the generated wrapper ---------------------------------


def _h_missing(row: Mapping[str, Any], keys: tuple[str, ...], sql: str, err: KeyError) -> BaseException:
    for k in keys:
        if k not in row:
            return MissingColumn(k, sql)
    return err


def _h_annotate(e: ExprEvalError, sql: str) -> None:
    if e.sql is None:
        e.sql = sql


def _h_wrap(e: Exception, sql: str) -> ExprEvalError:
    return ExprEvalError(f"{type(e).__name__}: {e}", sql)


_HELPERS: dict[str, Any] = {
    name: value for name, value in globals().items() if name.startswith("_h_")
}
_HELPERS["_EvalError"] = ExprEvalError
# The generated code runs without builtins: exception classes are passed in.
_HELPERS["_h_keyerror"] = KeyError
_HELPERS["_h_errors"] = (TypeError, ArithmeticError, ValueError)


# ---------------------------------------------------------------------------
# Parsing


class _ReplicatorExprDialect(Postgres):
    """PostgreSQL, plus MySQL-style `backtick` identifiers."""

    class Tokenizer(Postgres.Tokenizer):
        IDENTIFIERS = ['"', "`"]


def _parse(sql: str) -> exp.Expr:
    if not sql.strip():
        raise ExprError("empty expression")
    try:
        trees = [t for t in sqlglot.parse(sql, read=_ReplicatorExprDialect) if t is not None]
    except ParseError as e:
        raise ExprError(_syntax_message(sql, e)) from None
    except SqlglotError as e:
        msg = str(e)
        if "tokeniz" in msg.lower():
            msg = "unterminated quoted string or identifier"
        raise ExprError(f"syntax error in {sql!r}: {msg}") from None
    except RecursionError:
        raise ExprError(f"expression is too deeply nested: {sql[:80]!r}") from None
    if len(trees) != 1:
        raise ExprError(f"expected a single expression, got {len(trees)}: {sql!r}")
    return trees[0]


_ANSI = re.compile(r"\x1b\[[0-9;]*m")


def _syntax_message(sql: str, e: ParseError) -> str:
    if not e.errors:
        return f"syntax error in {sql!r}: {_ANSI.sub('', str(e))}"
    err = e.errors[0]
    desc = str(err.get("description") or "invalid syntax")
    near = str(err.get("highlight") or "")
    if desc.startswith("Required keyword"):
        desc = "incomplete expression"
    elif desc.startswith("Invalid expression / Unexpected token"):
        desc = "unexpected token"
    where = f" at line {err.get('line')}, column {err.get('col')}"
    near_text = f" near {near!r}" if near else " at end of input"
    return f"syntax error in {sql!r}: {desc}{near_text}{where}"


# ---------------------------------------------------------------------------
# Code generation

_NOCONST: Any = object()


@dataclass(frozen=True)
class _Code:
    src: str  # a Python atom: name, call, or parenthesised expression
    boolean: bool = False  # yields only True / False / None
    simple: bool = False  # a bare name: cheap and safe to repeat
    const: Any = _NOCONST  # the value, for literals and folded constants


_CMP_PY = {"=": "==", "<>": "!=", "<": "<", "<=": "<=", ">": ">", ">=": ">="}
_CMP_HELPER = {"=": "_h_eq", "<>": "_h_ne", "<": "_h_lt", "<=": "_h_le", ">": "_h_gt", ">=": "_h_ge"}
_CMP_FLIP = {"=": "=", "<>": "<>", "<": ">", "<=": ">=", ">": "<", ">=": "<="}
_CMP_NODES: dict[type, str] = {
    exp.EQ: "=",
    exp.NEQ: "<>",
    exp.LT: "<",
    exp.LTE: "<=",
    exp.GT: ">",
    exp.GTE: ">=",
}
_ARITH_NODES: dict[type, str] = {
    exp.Add: "_h_add",
    exp.Sub: "_h_sub",
    exp.Mul: "_h_mul",
    exp.Div: "_h_div",
    exp.Mod: "_h_mod",
}
_INT_RANGES = {
    exp.DataType.Type.SMALLINT: (-(2**15), 2**15 - 1, "smallint"),
    exp.DataType.Type.INT: (-(2**31), 2**31 - 1, "integer"),
    exp.DataType.Type.BIGINT: (-(2**63), 2**63 - 1, "bigint"),
}
_TEXT_TYPES = {
    exp.DataType.Type.TEXT,
    exp.DataType.Type.VARCHAR,
    exp.DataType.Type.CHAR,
    exp.DataType.Type.NVARCHAR,
    exp.DataType.Type.NCHAR,
}
_FLOAT_TYPES = {exp.DataType.Type.DOUBLE, exp.DataType.Type.FLOAT}
_TS_TYPES = {exp.DataType.Type.TIMESTAMP, exp.DataType.Type.TIMESTAMPTZ}

SUPPORTED_FUNCTIONS = (
    "ABS", "CAST", "CEIL", "CEILING", "COALESCE", "CONCAT", "CONCAT_WS", "FLOOR",
    "IF", "LENGTH", "LOWER", "LTRIM", "NULLIF", "REPLACE", "ROUND", "RTRIM",
    "SUBSTR", "SUBSTRING", "TRIM", "UPPER",
)

# Arguments of supported nodes that are handled (the default is all of them);
# any other argument present makes the construct unsupported.
_ALLOWED_ARGS: dict[type, frozenset[str]] = {
    exp.Column: frozenset({"this"}),
    exp.In: frozenset({"this", "expressions"}),
    exp.Trim: frozenset({"this", "expression", "position"}),
    exp.Length: frozenset({"this"}),
    exp.Substring: frozenset({"this", "start", "length"}),
    exp.Round: frozenset({"this", "decimals"}),
    exp.Ceil: frozenset({"this"}),
    exp.Floor: frozenset({"this"}),
    exp.Cast: frozenset({"this", "to"}),
    exp.Between: frozenset({"this", "low", "high"}),
    exp.ConcatWs: frozenset({"expressions"}),
}

# Arguments that sqlglot sets as dialect markers and that change nothing here.
_IGNORED_ARGS = frozenset({"typed", "safe", "coalesce", "is_nvl", "is_null"})


def _fast_classes(value: Any) -> tuple[type, ...] | None:
    """Value classes for which ``value <op> literal`` may use Python's own
    operator with SQL-correct results (see _coerce for everything else)."""
    t = type(value)
    if t is str:
        return (str,)
    if t is int:
        return (int, Decimal, float)
    if t is Decimal:
        return (int, Decimal)
    if t is float:
        return (float, int)
    if t in (bool, _dt.date, _dt.datetime, _dt.time, bytes):
        return (t,)
    return None


def _unsupported(node: exp.Expr, what: str | None = None) -> NoReturn:
    try:
        snippet = node.sql(dialect="postgres")
    except Exception:  # pragma: no cover - sqlglot generator failure
        snippet = node.key
    if len(snippet) > 60:
        snippet = snippet[:57] + "..."
    raise ExprError(f"unsupported SQL: {what or node.key} ({snippet})")


def _func_name(node: exp.Expr) -> str:
    if isinstance(node, exp.Anonymous):
        return str(node.name).upper()
    if isinstance(node, exp.Func):
        return str(node.sql_name())
    return node.key.upper()


class _Compiler:
    def __init__(self, sql: str, columns: Collection[str]) -> None:
        self.sql = sql
        names = list(dict.fromkeys(columns))
        self.names = names if isinstance(columns, Sequence) else sorted(names)
        self.exact = set(names)
        self.folded: dict[str, list[str]] = {}
        for n in names:
            self.folded.setdefault(n.casefold(), []).append(n)
        self.params: list[str] = []
        self.values: list[Any] = []
        self.colvars: dict[str, str] = {}
        self.ntemp = 0

    # -- naming ------------------------------------------------------------

    def const(self, value: Any) -> str:
        name = f"_c{len(self.values)}"
        self.params.append(name)
        self.values.append(value)
        return name

    def temp(self) -> str:
        self.ntemp += 1
        return f"_t{self.ntemp}"

    def column(self, ident: exp.Identifier) -> str:
        name = str(ident.this)
        resolved = self.resolve(name, bool(ident.args.get("quoted")))
        var = self.colvars.get(resolved)
        if var is None:
            var = f"_v{len(self.colvars)}"
            self.colvars[resolved] = var
        return var

    def resolve(self, name: str, quoted: bool) -> str:
        if name in self.exact:
            return name
        matches = self.folded.get(name.casefold(), [])
        if not quoted and len(matches) == 1:
            return matches[0]
        if not quoted and len(matches) > 1:
            raise ExprError(
                f"ambiguous column {name!r}: matches {', '.join(map(repr, matches))}"
                " (quote the name to pick one)"
            )
        hint = ""
        if quoted and matches:
            hint = f"; quoted names are case-sensitive, did you mean {matches[0]!r}?"
        elif quoted:
            hint = "; use single quotes for string literals"
        shown = self.names[:50]
        listing = ", ".join(shown) + (f", ... ({len(self.names) - 50} more)" if len(self.names) > 50 else "")
        raise ExprError(f"unknown column {name!r} (columns: {listing or 'none'}){hint}")

    @staticmethod
    def first_use(first: str, again: str) -> _Code:
        """A code for the first use of a bound value (a walrus unless the
        value is a bare name)."""
        return _Code(first, simple=first == again)

    def bind(self, code: _Code) -> tuple[str, str]:
        """(first use, later uses) of a value needed more than once."""
        if code.simple:
            return code.src, code.src
        t = self.temp()
        return f"({t} := {code.src})", t

    # -- entry point -------------------------------------------------------

    def gen(self, node: exp.Expr) -> _Code:
        method = getattr(self, f"gen_{type(node).__name__}", None)
        if method is not None:
            self.check_args(node)
            result: _Code = method(node)
            return result
        self.reject(node)

    def check_args(self, node: exp.Expr) -> None:
        allowed = self.allowed_args(node)
        for key, value in node.args.items():
            if key not in allowed and key not in _IGNORED_ARGS and value:
                _unsupported(node, f"{_func_name(node)} with {key.upper()}")

    @staticmethod
    def allowed_args(node: exp.Expr) -> frozenset[str]:
        allowed = _ALLOWED_ARGS.get(type(node))
        return allowed if allowed is not None else frozenset(node.arg_types)

    def reject(self, node: exp.Expr) -> NoReturn:
        if isinstance(node, exp.Window):
            _unsupported(node, "window functions")
        if isinstance(node, (exp.Subquery, exp.Select, exp.Exists, exp.Union)):
            _unsupported(node, "subqueries")
        if isinstance(node, exp.Alias):
            raise ExprError(
                f"unexpected alias {node.alias!r} in {self.sql!r} (missing operator or comma?)"
            )
        if isinstance(node, exp.AggFunc):
            _unsupported(node, f"aggregate function {_func_name(node)}()")
        if isinstance(node, exp.Func):
            raise ExprError(
                f"unsupported function {_func_name(node)}() in {self.sql!r}"
                f" (supported: {', '.join(SUPPORTED_FUNCTIONS)})"
            )
        if isinstance(node, (exp.Parameter, exp.Placeholder)):
            _unsupported(node, "parameters")
        if isinstance(node, exp.Star):
            _unsupported(node, "*")
        _unsupported(node)

    # -- leaves ------------------------------------------------------------

    def gen_Paren(self, node: exp.Paren) -> _Code:
        return self.gen(node.this)

    def gen_Column(self, node: exp.Column) -> _Code:
        ident = node.this
        if not isinstance(ident, exp.Identifier):
            self.reject(ident)
        return _Code(self.column(ident), simple=True)

    def gen_Literal(self, node: exp.Literal) -> _Code:
        text = str(node.this)
        value: Any
        if node.is_string:
            value = text
        elif re.fullmatch(r"[0-9]+", text):
            value = int(text)
        else:
            try:
                value = Decimal(text)
            except decimal.InvalidOperation:
                raise ExprError(f"invalid number {text!r}") from None
            if value.as_tuple().exponent > 0:  # type: ignore[operator]
                value = value.quantize(_ONE, context=_EXACT)
        return self.literal(value)

    def literal(self, value: Any) -> _Code:
        if value is None:
            return _Code("None", boolean=True, simple=True, const=None)
        if value is True or value is False:
            return _Code(repr(value), boolean=True, simple=True, const=value)
        return _Code(self.const(value), simple=True, const=value)

    def gen_Boolean(self, node: exp.Boolean) -> _Code:
        return self.literal(bool(node.this))

    def gen_Null(self, node: exp.Null) -> _Code:
        return self.literal(None)

    def condition(self, node: exp.Expr) -> str:
        """Code for a value used as a condition (True/False/None)."""
        code = self.gen(node)
        return code.src if code.boolean else f"_h_b({code.src})"

    # -- logic -------------------------------------------------------------

    def flatten(self, node: exp.Expr, cls: type) -> list[exp.Expr]:
        out: list[exp.Expr] = []
        stack = [node]
        while stack:
            n = stack.pop()
            while isinstance(n, exp.Paren):
                n = n.this
            if isinstance(n, cls):
                stack.append(n.expression)
                stack.append(n.this)
            else:
                out.append(n)
        return out

    def gen_And(self, node: exp.And) -> _Code:
        parts = [self.condition(p) for p in self.flatten(node, exp.And)]
        temps = [self.temp() for _ in parts]
        tests = " or ".join(f"({t} := {p}) is False" for t, p in zip(temps, parts))
        # No operand is False here, so each is True or None: `and` yields the
        # first None, else True.
        return _Code(f"(False if {tests} else ({' and '.join(temps)}))", boolean=True)

    def gen_Or(self, node: exp.Or) -> _Code:
        parts = [self.condition(p) for p in self.flatten(node, exp.Or)]
        temps = [self.temp() for _ in parts]
        tests = " or ".join(f"({t} := {p}) is True" for t, p in zip(temps, parts))
        nulls = " or ".join(f"{t} is None" for t in temps)
        return _Code(f"(True if {tests} else (None if {nulls} else False))", boolean=True)

    def gen_Not(self, node: exp.Not) -> _Code:
        inner = node.this
        while isinstance(inner, exp.Paren):
            inner = inner.this
        if isinstance(inner, exp.In):
            self.check_args(inner)
            return self.gen_in(inner, negate=True)
        if isinstance(inner, (exp.Like, exp.ILike, exp.Escape)):
            return self.gen_like(inner, negate=True)
        cond = self.condition(inner)
        t = self.temp()
        return _Code(f"(None if ({t} := {cond}) is None else (not {t}))", boolean=True)

    # -- comparisons -------------------------------------------------------

    def compare(self, op: str, left: _Code, right: _Code) -> _Code:
        if left.const is not _NOCONST and right.const is _NOCONST:
            op, left, right = _CMP_FLIP[op], right, left
        helper = _CMP_HELPER[op]
        if right.const is None or left.const is None:
            # Comparing with NULL is NULL; still evaluate the other side once
            # (it may bind a temporary that later code reads).
            other = left if right.const is None else right
            return _Code(f"(None if {other.src} is None else None)", boolean=True)
        classes = _fast_classes(right.const) if right.const is not _NOCONST else None
        if classes is None or left.const is not _NOCONST:
            return _Code(f"{helper}({left.src}, {right.src})", boolean=True)
        first, again = self.bind(left)
        guard = self.class_guard(first, classes)
        py = _CMP_PY[op]
        also = ""
        if isinstance(right.const, str):
            # A text literal that is a date is usually compared with a date
            # column: give that case a fast path too.
            try:
                day = _dt.date.fromisoformat(right.const.strip())
            except ValueError:
                pass
            else:
                date_guard = self.class_guard(again, (_dt.date,))
                also = f"{again} {py} {self.const(day)} if {date_guard} else "
        return _Code(
            f"({again} {py} {right.src} if {guard} else {also}{helper}({again}, {right.src}))",
            boolean=True,
        )

    def class_guard(self, value_src: str, classes: tuple[type, ...]) -> str:
        if len(classes) == 1:
            return f"{value_src}.__class__ is {self.const(classes[0])}"
        return f"{value_src}.__class__ in {self.const(frozenset(classes))}"

    def gen_EQ(self, node: exp.Expr) -> _Code:
        return self.compare(_CMP_NODES[type(node)], self.gen(node.this), self.gen(node.expression))

    gen_NEQ = gen_LT = gen_LTE = gen_GT = gen_GTE = gen_EQ

    def gen_NullSafeEQ(self, node: exp.NullSafeEQ) -> _Code:
        a, b = self.gen(node.this), self.gen(node.expression)
        return _Code(f"_h_notdistinct({a.src}, {b.src})", boolean=True)

    def gen_NullSafeNEQ(self, node: exp.NullSafeNEQ) -> _Code:
        a, b = self.gen(node.this), self.gen(node.expression)
        return _Code(f"_h_distinct({a.src}, {b.src})", boolean=True)

    def gen_Is(self, node: exp.Is) -> _Code:
        target = node.expression
        neg = bool(node.args.get("negate"))
        if isinstance(target, exp.Null):
            value = self.gen(node.this)
            return _Code(f"({value.src} is {'not ' if neg else ''}None)", boolean=True)
        if isinstance(target, exp.Boolean):
            cond = self.condition(node.this)
            lit = "True" if target.this else "False"
            return _Code(f"({cond} is {'not ' if neg else ''}{lit})", boolean=True)
        _unsupported(node, "IS with something other than NULL, TRUE or FALSE")

    def gen_Between(self, node: exp.Between) -> _Code:
        first, again = self.bind(self.gen(node.this))
        low = self.compare(">=", self.first_use(first, again), self.gen(node.args["low"]))
        high = self.compare("<=", _Code(again, simple=True), self.gen(node.args["high"]))
        t1, t2 = self.temp(), self.temp()
        return _Code(
            f"(False if ({t1} := {low.src}) is False or ({t2} := {high.src}) is False"
            f" else ({t1} and {t2}))",
            boolean=True,
        )

    def gen_In(self, node: exp.In) -> _Code:
        return self.gen_in(node, negate=False)

    def gen_in(self, node: exp.In, negate: bool) -> _Code:
        items = node.expressions
        if not items:
            raise ExprError(f"empty IN list in {self.sql!r}")
        value = self.gen(node.this)
        codes = [self.gen(i) for i in items]
        slow = "_h_notin" if negate else "_h_in"
        if all(c.const is not _NOCONST for c in codes):
            consts = [c.const for c in codes]
            present = [c for c in consts if c is not None]
            has_null = len(present) < len(consts)
            classes = self.in_classes(present)
            items_src = self.const(tuple(consts))
            if classes is None:
                return _Code(f"{slow}({value.src}, {items_src})", boolean=True)
            first, again = self.bind(value)
            guard = self.class_guard(first, classes)
            members = self.const(frozenset(present))
            if negate:
                hit = f"({again} not in {members})" if not has_null else f"(False if {again} in {members} else None)"
            else:
                hit = f"({again} in {members})" if not has_null else f"(True if {again} in {members} else None)"
            return _Code(f"({hit} if {guard} else {slow}({again}, {items_src}))", boolean=True)
        tup = "(" + ", ".join(c.src for c in codes) + ",)"
        return _Code(f"{slow}({value.src}, {tup})", boolean=True)

    @staticmethod
    def in_classes(values: list[Any]) -> tuple[type, ...] | None:
        """Classes of a value for which frozenset membership in ``values``
        is SQL equality, or None when the list mixes kinds."""
        if not values:
            return None
        kinds = {type(v) for v in values}
        if kinds == {str}:
            return (str,)
        if kinds == {int}:
            return (int, Decimal, float)
        if kinds <= {int, Decimal}:
            return (int, Decimal)
        if len(kinds) == 1 and next(iter(kinds)) in (bool, _dt.date, _dt.datetime, bytes):
            return (next(iter(kinds)),)
        return None

    # -- LIKE --------------------------------------------------------------

    def gen_Like(self, node: exp.Expr) -> _Code:
        return self.gen_like(node, negate=False)

    gen_ILike = gen_Escape = gen_Like

    def gen_like(self, node: exp.Expr, negate: bool) -> _Code:
        escape: _Code = self.literal("\\")
        if isinstance(node, exp.Escape):
            escape = self.gen(node.expression)
            node = node.this
            if not isinstance(node, (exp.Like, exp.ILike)):
                _unsupported(node, "ESCAPE")
        if not isinstance(node, (exp.Like, exp.ILike)):
            _unsupported(node)
        for key, v in node.args.items():
            if key not in ("this", "expression", "negate") and v:
                _unsupported(node, f"LIKE with {key.upper()}")
        if node.args.get("negate"):
            negate = not negate
        icase = isinstance(node, exp.ILike)
        if isinstance(node.expression, (exp.Any, exp.All)):
            _unsupported(node.expression, "LIKE ANY/ALL")
        value = self.gen(node.this)
        pattern = self.gen(node.expression)
        neg = "True" if negate else "False"
        if pattern.const is None or escape.const is None:
            return _Code("None", boolean=True, simple=True, const=None)
        if pattern.const is _NOCONST or escape.const is _NOCONST:
            ic = "True" if icase else "False"
            return _Code(f"_h_like({value.src}, {pattern.src}, {escape.src}, {ic}, {neg})", boolean=True)
        if not isinstance(pattern.const, str) or not isinstance(escape.const, str):
            raise ExprError(f"LIKE pattern and ESCAPE must be text in {self.sql!r}")
        if len(escape.const) > 1:
            raise ExprError(f"invalid LIKE escape string {escape.const!r}: must be one character")
        try:
            regex = _like_regex(pattern.const, escape.const or None, icase)
        except ValueError as e:
            raise ExprError(f"{e}: {pattern.const!r}") from None
        match = self.const(regex.fullmatch)
        regex_src = self.const(regex)
        first, again = self.bind(value)
        guard = self.class_guard(first, (str,))
        test = "is None" if negate else "is not None"
        return _Code(
            f"({match}({again}) {test} if {guard} else _h_like_slow({again}, {regex_src}, {neg}))",
            boolean=True,
        )

    # -- conditionals ------------------------------------------------------

    def gen_Case(self, node: exp.Case) -> _Code:
        subject = node.args.get("this")
        branches: list[str] = []
        results: list[_Code] = []
        bound: tuple[str, str] | None = None
        if subject is not None:
            bound = self.bind(self.gen(subject))
        for i, when in enumerate(node.args.get("ifs") or []):
            if not isinstance(when, exp.If):
                _unsupported(when)
            if bound is not None:
                subj = self.first_use(*bound) if i == 0 else _Code(bound[1], simple=True)
                cond = self.compare("=", subj, self.gen(when.this)).src
            else:
                cond = self.condition(when.this)
            result = self.gen(when.args["true"])
            results.append(result)
            branches.append(f"{result.src} if {cond} is True else ")
        if bound is not None and not branches:
            _unsupported(node, "CASE without WHEN")
        default_node = node.args.get("default")
        default = self.gen(default_node) if default_node is not None else self.literal(None)
        results.append(default)
        return _Code(
            "(" + "".join(branches) + default.src + ")",
            boolean=all(r.boolean for r in results),
        )

    def gen_If(self, node: exp.If) -> _Code:
        cond = self.condition(node.this)
        true = self.gen(node.args["true"])
        false_node = node.args.get("false")
        false = self.gen(false_node) if false_node is not None else self.literal(None)
        return _Code(
            f"({true.src} if {cond} is True else {false.src})",
            boolean=true.boolean and false.boolean,
        )

    def gen_Coalesce(self, node: exp.Coalesce) -> _Code:
        codes = [self.gen(node.this)] + [self.gen(e) for e in node.expressions]
        parts: list[str] = []
        for code in codes[:-1]:
            first, again = self.bind(code)
            parts.append(f"{again} if {first} is not None else ")
        # `A if COND else B` evaluates COND first, so the walrus in the test
        # runs before the value is read.
        return _Code(
            "(" + "".join(parts) + codes[-1].src + ")",
            boolean=all(c.boolean for c in codes),
        )

    def gen_Nullif(self, node: exp.Nullif) -> _Code:
        value = self.gen(node.this)
        first, again = self.bind(value)
        eq = self.compare("=", self.first_use(first, again), self.gen(node.expression))
        return _Code(f"(None if {eq.src} is True else {again})", boolean=value.boolean)

    # -- arithmetic and text -----------------------------------------------

    def gen_Add(self, node: exp.Expr) -> _Code:
        a, b = self.gen(node.this), self.gen(node.expression)
        return _Code(f"{_ARITH_NODES[type(node)]}({a.src}, {b.src})")

    gen_Sub = gen_Mul = gen_Div = gen_Mod = gen_Add

    def gen_Neg(self, node: exp.Neg) -> _Code:
        inner = self.gen(node.this)
        if inner.const is not _NOCONST and _numkind(inner.const) is not None:
            return self.literal(_h_neg(inner.const))
        return _Code(f"_h_neg({inner.src})")

    def gen_DPipe(self, node: exp.DPipe) -> _Code:
        parts = [self.gen(p).src for p in self.flatten(node, exp.DPipe)]
        return _Code(f"_h_dpipe({', '.join(parts)})")

    def gen_Concat(self, node: exp.Concat) -> _Code:
        parts = [self.gen(p).src for p in node.expressions]
        return _Code(f"_h_concat({', '.join(parts)})")

    def gen_ConcatWs(self, node: exp.ConcatWs) -> _Code:
        parts = [self.gen(p).src for p in node.expressions]
        if len(parts) < 2:
            raise ExprError(f"CONCAT_WS() needs a separator and at least one value in {self.sql!r}")
        return _Code(f"_h_concat_ws({', '.join(parts)})")

    def call(self, helper: str, *args: exp.Expr | None) -> _Code:
        srcs = [self.gen(a).src for a in args if a is not None]
        return _Code(f"{helper}({', '.join(srcs)})")

    def gen_Upper(self, node: exp.Upper) -> _Code:
        return self.call("_h_upper", node.this)

    def gen_Lower(self, node: exp.Lower) -> _Code:
        return self.call("_h_lower", node.this)

    def gen_Length(self, node: exp.Length) -> _Code:
        return self.call("_h_length", node.this)

    def gen_Abs(self, node: exp.Abs) -> _Code:
        return self.call("_h_abs", node.this)

    def gen_Floor(self, node: exp.Floor) -> _Code:
        return self.call("_h_floor", node.this)

    def gen_Ceil(self, node: exp.Ceil) -> _Code:
        return self.call("_h_ceil", node.this)

    def gen_Round(self, node: exp.Round) -> _Code:
        decimals = node.args.get("decimals")
        return self.call("_h_round2" if decimals is not None else "_h_round1", node.this, decimals)

    def gen_Replace(self, node: exp.Replace) -> _Code:
        replacement = node.args.get("replacement")
        new = self.gen(replacement).src if replacement is not None else self.const("")
        return _Code(f"_h_replace({self.gen(node.this).src}, {self.gen(node.expression).src}, {new})")

    def gen_Trim(self, node: exp.Trim) -> _Code:
        position = str(node.args.get("position") or "BOTH").upper()
        helper = {"BOTH": "_h_btrim", "LEADING": "_h_ltrim", "TRAILING": "_h_rtrim"}.get(position)
        if helper is None:
            _unsupported(node, f"TRIM {position}")
        chars_node = node.args.get("expression")
        chars = self.gen(chars_node).src if chars_node is not None else self.const(" ")
        return _Code(f"{helper}({self.gen(node.this).src}, {chars})")

    def gen_Substring(self, node: exp.Substring) -> _Code:
        start = node.args.get("start")
        length = node.args.get("length")
        if start is None:
            start_src = self.const(1)
        else:
            start_src = self.gen(start).src
        s = self.gen(node.this).src
        if length is None:
            return _Code(f"_h_substr2({s}, {start_src})")
        return _Code(f"_h_substr3({s}, {start_src}, {self.gen(length).src})")

    # -- casts -------------------------------------------------------------

    def gen_Cast(self, node: exp.Cast) -> _Code:
        to = node.args["to"]
        if not isinstance(to, exp.DataType):
            _unsupported(node)
        t = to.this
        params: list[int] = []
        for p in to.expressions:
            lit = p.this if isinstance(p, exp.DataTypeParam) else p
            if not isinstance(lit, exp.Literal) or lit.is_string or not str(lit.this).isdigit():
                _unsupported(node, f"CAST to {to.sql(dialect='postgres')}")
            params.append(int(str(lit.this)))
        target = to.sql(dialect="postgres")
        value = self.gen(node.this)
        fn: Callable[..., Any]
        extra: tuple[Any, ...]
        if t in _TEXT_TYPES:
            maxlen = params[0] if params and t is not exp.DataType.Type.TEXT else None
            fn, name, extra = _h_cast_text, "_h_cast_text", (maxlen,)
        elif t in _INT_RANGES:
            fn, name, extra = _h_cast_int, "_h_cast_int", _INT_RANGES[t]
        elif t is exp.DataType.Type.DECIMAL:
            if len(params) > 2:
                _unsupported(node, f"CAST to {target}")
            extra = (params[0] if params else None, params[1] if len(params) > 1 else None)
            fn, name = _h_cast_num, "_h_cast_num"
        elif t in _FLOAT_TYPES:
            fn, name, extra = _h_cast_float, "_h_cast_float", ()
        elif t is exp.DataType.Type.BOOLEAN:
            fn, name, extra = _h_cast_bool, "_h_cast_bool", ()
        elif t is exp.DataType.Type.DATE:
            fn, name, extra = _h_cast_date, "_h_cast_date", ()
        elif t in _TS_TYPES:
            fn, name, extra = _h_cast_ts, "_h_cast_ts", ()
        else:
            _unsupported(node, f"CAST to {target}")
        if value.const is not _NOCONST:
            try:
                folded = fn(value.const, *extra)
            except ExprEvalError as e:
                raise ExprError(f"invalid literal in {self.sql!r}: {e.message}") from None
            return self.literal(folded)
        args = ", ".join([value.src] + [self.const(x) for x in extra])
        return _Code(f"{name}({args})", boolean=t is exp.DataType.Type.BOOLEAN)


# ---------------------------------------------------------------------------
# Assembly

_GENERATED_NAME = re.compile(
    r"_(?:[cvt][0-9]+|h_[a-z_0-9]+|EvalError|make|expr|pred|err)|row|__class__"
)
_KEYWORDS_OK = frozenset(
    {"def", "return", "try", "except", "as", "raise", "from", "None", "True",
     "False", "if", "else", "is", "not", "in", "and", "or"}
)


def _check_source(source: str) -> None:
    """Defense in depth: the generated code may only contain generated names,
    keywords and operators, never a string or number taken from the SQL."""
    for tok in tokenize.generate_tokens(io.StringIO(source).readline):
        if tok.type == tokenize.NAME:
            ok = tok.string in _KEYWORDS_OK or _GENERATED_NAME.fullmatch(tok.string) is not None
            if not ok or (keyword.iskeyword(tok.string) and tok.string not in _KEYWORDS_OK):
                raise AssertionError(f"unexpected name in generated code: {tok.string!r}")
        elif tok.type in (tokenize.STRING, tokenize.NUMBER):
            raise AssertionError(f"literal in generated code: {tok.string!r}")


def _assemble(body: str, comp: _Compiler) -> str:
    keys = list(comp.colvars)
    key_names = [comp.const(k) for k in keys]
    keys_tuple = comp.const(tuple(keys))
    sql_name = comp.const(comp.sql)
    lines = [f"def _make({', '.join(comp.params)}):"]
    for fname, ret in (("_expr", body), ("_pred", f"({body} is True)")):
        lines.append(f"    def {fname}(row):")
        if keys:
            lines.append("        try:")
            for var, key in zip(comp.colvars.values(), key_names):
                lines.append(f"            {var} = row[{key}]")
            lines.append("        except _h_keyerror as _err:")
            lines.append(f"            raise _h_missing(row, {keys_tuple}, {sql_name}, _err) from None")
        lines.append("        try:")
        lines.append(f"            return {ret}")
        lines.append("        except _EvalError as _err:")
        lines.append(f"            _h_annotate(_err, {sql_name})")
        lines.append("            raise")
        lines.append("        except _h_errors as _err:")
        lines.append(f"            raise _h_wrap(_err, {sql_name}) from _err")
    lines.append("    return _expr, _pred")
    return "\n".join(lines) + "\n"


def compile_expr(sql: str, columns: Collection[str]) -> Expr:
    """Compile ``sql`` into an :class:`Expr` evaluated on rows (mappings)
    whose keys are ``columns``.  Raises :class:`ExprError`."""
    if not isinstance(sql, str):
        raise ExprError(f"expression must be a string, got {type(sql).__name__}")
    tree = _parse(sql)
    comp = _Compiler(sql, columns)
    try:
        body = comp.gen(tree).src
    except RecursionError:
        raise ExprError(f"expression is too deeply nested: {sql[:80]!r}") from None
    source = _assemble(body, comp)
    _check_source(source)
    namespace: dict[str, Any] = dict(_HELPERS)
    namespace["__builtins__"] = {}
    try:
        code = compile(source, "<expr>", "exec")
        exec(code, namespace)
    except (SyntaxError, RecursionError, MemoryError):
        raise ExprError(f"expression is too complex or too deeply nested: {sql[:80]!r}") from None
    fn, pred = namespace["_make"](*comp.values)
    return Expr(
        sql=sql,
        columns=frozenset(comp.colvars),
        fn=fn,
        predicate=pred,
        source=source,
    )
