"""Tests for replicator.expr: SQL expressions compiled to Python callables."""

from __future__ import annotations

import datetime as dt
import decimal
import uuid
from decimal import Decimal
from typing import Any

import pytest

from replicator.expr import (
    Expr,
    ExprError,
    ExprEvalError,
    MissingColumn,
    compile_expr,
    is_true,
)


def ev(sql: str, **row: Any) -> Any:
    """Compile ``sql`` against the columns of ``row`` and evaluate it."""
    return compile_expr(sql, list(row))(row)


def same(actual: Any, expected: Any) -> bool:
    """Equal value *and* type (so Decimal('2') is not 2, True is not 1)."""
    return type(actual) is type(expected) and actual == expected


# ---------------------------------------------------------------------------
# The examples from the config documentation


def test_filter_example() -> None:
    e = compile_expr("status <> 'draft' AND country IN ('DE', 'FR')", ["id", "status", "country"])
    assert e.columns == frozenset({"status", "country"})
    assert e({"id": 1, "status": "live", "country": "DE"}) is True
    assert e({"id": 1, "status": "draft", "country": "DE"}) is False
    assert e({"id": 1, "status": "live", "country": "US"}) is False
    assert e({"id": 1, "status": None, "country": "FR"}) is None
    assert e({"id": 1, "status": None, "country": "US"}) is False
    assert e.test({"id": 1, "status": "live", "country": "FR"}) is True
    assert e.test({"id": 1, "status": None, "country": "FR"}) is False


def test_computed_price_example() -> None:
    assert same(ev("price_cents / 100.0", price_cents=1999), Decimal("19.99"))
    assert ev("price_cents / 100.0", price_cents=None) is None


def test_not_empty_example() -> None:
    sql = "first_name IS NOT NULL AND first_name <> ''"
    assert ev(sql, first_name="Ann") is True
    assert ev(sql, first_name="") is False
    assert ev(sql, first_name=None) is False


def test_validation_example() -> None:
    assert ev("price >= 0", price=0) is True
    assert ev("price >= 0", price=Decimal("-0.01")) is False
    assert ev("price >= 0", price=1.5) is True
    assert ev("price >= 0", price=None) is None


# ---------------------------------------------------------------------------
# Literals


@pytest.mark.parametrize(
    ("sql", "expected"),
    [
        ("42", 42),
        ("-42", -42),
        ("100.0", Decimal("100.0")),
        ("0.5", Decimal("0.5")),
        ("1e3", Decimal("1000")),
        ("'it''s'", "it's"),
        ("''", ""),
        ("TRUE", True),
        ("FALSE", False),
        ("- - 3", 3),
    ],
)
def test_literals(sql: str, expected: Any) -> None:
    assert same(ev(sql), expected)


def test_null_literal() -> None:
    assert ev("NULL") is None


def test_backslash_in_string_literal_is_literal() -> None:
    assert ev(r"'a\nb'") == "a\\nb"


def test_python_code_in_literal_is_just_a_string() -> None:
    payload = '__import__("os").system("x")'
    e = compile_expr("'" + payload + "'", [])
    assert e({}) == payload
    assert payload not in e.source
    assert ev("s = '" + payload + "'", s=payload) is True
    assert ev("s || '\"); __import__(''os'')'", s="x") == "x\"); __import__('os')"


def test_column_name_with_python_code_is_just_a_name() -> None:
    name = '"]) or __import__("os") or (["'
    e = compile_expr('"' + name.replace('"', '""') + '" = 1', [name])
    assert e.columns == frozenset({name})
    assert e({name: 1}) is True
    assert "__import__" not in e.source


def test_generated_code_has_no_builtins() -> None:
    e = compile_expr("a + 1", ["a"])
    assert e.fn.__globals__["__builtins__"] == {}


# ---------------------------------------------------------------------------
# Arithmetic


@pytest.mark.parametrize(
    ("sql", "expected"),
    [
        ("a + b", 10),
        ("a - b", 4),
        ("a * b", 21),
        ("a / b", 2),
        ("a % b", 1),
        ("-a", -7),
        ("a + b * 2", 13),
        ("(a + b) * 2", 20),
    ],
)
def test_integer_arithmetic(sql: str, expected: int) -> None:
    assert same(ev(sql, a=7, b=3), expected)


@pytest.mark.parametrize(
    ("a", "b", "quotient", "remainder"),
    [(7, 2, 3, 1), (-7, 2, -3, -1), (7, -2, -3, 1), (-7, -2, 3, -1)],
)
def test_integer_division_truncates_toward_zero(a: int, b: int, quotient: int, remainder: int) -> None:
    assert same(ev("a / b", a=a, b=b), quotient)
    assert same(ev("a % b", a=a, b=b), remainder)


def test_decimal_arithmetic() -> None:
    assert same(ev("1999 / 100.0"), Decimal("19.99"))
    assert same(ev("a * 1.5", a=3), Decimal("4.5"))
    assert same(ev("a + b", a=Decimal("0.1"), b=Decimal("0.2")), Decimal("0.3"))
    assert same(ev("a - 1", a=Decimal("0.5")), Decimal("-0.5"))
    assert same(ev("a % 3", a=Decimal("7.5")), Decimal("1.5"))
    assert same(ev("a % 2", a=Decimal("-7")), Decimal("-1"))
    assert same(ev("-a", a=Decimal("1.50")), Decimal("-1.50"))
    assert same(ev("a / 1.0", a=100), Decimal("100"))
    assert str(ev("a / 1.0", a=100)) == "100"


def test_decimal_division_precision_uses_private_context() -> None:
    before = decimal.getcontext().prec
    assert same(ev("1 / 3.0"), Decimal("0." + "3" * 40))
    assert same(ev("a / b", a=Decimal(2), b=Decimal(3)), Decimal("0." + "6" * 39 + "7"))
    assert decimal.getcontext().prec == before


def test_decimal_add_and_multiply_are_exact() -> None:
    big = Decimal("12345678901234567890123456789012345678901234567890.123456789")
    assert same(ev("a + 1", a=big), Decimal("12345678901234567890123456789012345678901234567891.123456789"))
    assert ev("a * 10", a=big) == Decimal("123456789012345678901234567890123456789012345678901.23456789")


def test_float_arithmetic() -> None:
    assert same(ev("a + 1", a=0.5), 1.5)
    assert same(ev("a * 2.5", a=2.0), 5.0)
    assert same(ev("a + b", a=0.5, b=Decimal("0.25")), 0.75)
    assert same(ev("a / 4", a=1.0), 0.25)
    assert same(ev("a % 2", a=-7.0), -1.0)


@pytest.mark.parametrize("sql", ["a / 0", "a / 0.0", "a % 0", "a / b"])
def test_division_by_zero(sql: str) -> None:
    with pytest.raises(ExprEvalError, match="division by zero") as info:
        ev(sql, a=1, b=0.0)
    assert sql in str(info.value)
    assert isinstance(info.value, ValueError)


@pytest.mark.parametrize("sql", ["a + b", "a - b", "a * b", "a / b", "a % b"])
def test_arithmetic_null_propagation(sql: str) -> None:
    assert ev(sql, a=None, b=1) is None
    assert ev(sql, a=1, b=None) is None
    assert ev(sql, a=None, b=None) is None
    assert ev(sql, a=Decimal(1), b=None) is None


def test_unary_minus_null() -> None:
    assert ev("-a", a=None) is None


def test_arithmetic_type_errors() -> None:
    with pytest.raises(ExprEvalError, match=r"operator \+ needs numbers.*text 'x'"):
        ev("a + 1", a="x")
    with pytest.raises(ExprEvalError, match=r"use \|\| to concatenate"):
        ev("a + b", a="x", b="y")
    with pytest.raises(ExprEvalError, match="needs numbers.*boolean"):
        ev("a * 2", a=True)
    with pytest.raises(ExprEvalError, match="unary minus"):
        ev("-a", a="x")


# ---------------------------------------------------------------------------
# Comparisons


@pytest.mark.parametrize(
    ("op", "results"),
    [
        ("=", (False, True, False)),
        ("<>", (True, False, True)),
        ("!=", (True, False, True)),
        ("<", (True, False, False)),
        ("<=", (True, True, False)),
        (">", (False, False, True)),
        (">=", (False, True, True)),
    ],
)
def test_comparison_operators(op: str, results: tuple[bool, bool, bool]) -> None:
    for a, expected in zip((1, 2, 3), results):
        assert ev(f"a {op} 2", a=a) is expected  # literal fast path
        assert ev(f"a {op} b", a=a, b=2) is expected  # generic path
        assert ev(f"a {op} 'b'", a=chr(ord("a") + a - 1)) is expected  # text
    flipped = {"<": ">", "<=": ">=", ">": "<", ">=": "<="}.get(op, op)
    for a, expected in zip((1, 2, 3), results):
        assert ev(f"2 {flipped} a", a=a) is expected


@pytest.mark.parametrize("op", ["=", "<>", "<", "<=", ">", ">="])
def test_comparison_null_propagation(op: str) -> None:
    assert ev(f"a {op} 1", a=None) is None
    assert ev(f"a {op} b", a=1, b=None) is None
    assert ev(f"a {op} b", a=None, b=None) is None
    assert ev(f"a {op} NULL", a=1) is None
    assert ev(f"NULL {op} a", a=1) is None
    assert ev(f"a {op} 'x'", a=None) is None


def test_numbers_of_different_types_compare_by_value() -> None:
    assert ev("a = b", a=1, b=Decimal("1.00")) is True
    assert ev("a = b", a=1, b=1.0) is True
    assert ev("a < b", a=Decimal("0.5"), b=1) is True
    assert ev("a = 0.1", a=0.1) is True  # Decimal literal vs float column
    assert ev("a = b", a=0.1, b=Decimal("0.1")) is True
    assert ev("a > 0.05", a=0.1) is True
    assert ev("a = 2", a=Decimal("2.0")) is True
    assert ev("a = 2.0", a=2) is True
    assert ev("a IN (2.0, 3)", a=2) is True
    assert ev("a IN (2, 3)", a=Decimal("2.00")) is True
    assert ev("a IN (0.1)", a=0.1) is True


def test_text_vs_number_is_an_error() -> None:
    with pytest.raises(ExprEvalError, match="cannot compare text '5' with integer 5") as info:
        ev("a = 5", a="5")
    assert "a = 5" in str(info.value)
    with pytest.raises(ExprEvalError, match="cannot compare"):
        ev("a < b", a=1, b="2")
    with pytest.raises(ExprEvalError, match="cannot compare"):
        ev("a IN ('1', '2')", a=1)


def test_bool_compares_with_bool_and_int() -> None:
    assert ev("a = TRUE", a=True) is True
    assert ev("a = FALSE", a=True) is False
    assert ev("a = TRUE", a=1) is True  # MySQL BOOLEAN is TINYINT(1)
    assert ev("a = 0", a=False) is True
    with pytest.raises(ExprEvalError, match="cannot compare"):
        ev("a = 'yes'", a=True)


def test_dates_compare_with_string_literals() -> None:
    assert ev("birth_date >= '2000-01-01'", birth_date=dt.date(2000, 1, 1)) is True
    assert ev("birth_date >= '2000-01-01'", birth_date=dt.date(1999, 12, 31)) is False
    assert ev("'2000-01-01' <= birth_date", birth_date=dt.date(2001, 5, 5)) is True
    assert ev("birth_date BETWEEN '2000-01-01' AND '2000-12-31'", birth_date=dt.date(2000, 6, 1)) is True
    assert ev("birth_date IN ('2000-01-01', '2000-01-02')", birth_date=dt.date(2000, 1, 2)) is True
    ts = dt.datetime(2000, 1, 1, 12, 30)
    assert ev("ts > '2000-01-01'", ts=ts) is True
    assert ev("ts < '2000-01-01 12:31:00'", ts=ts) is True
    assert ev("t = '12:30:00'", t=dt.time(12, 30)) is True
    assert ev("d = DATE '2000-01-01'", d=dt.date(2000, 1, 1)) is True
    assert ev("d < ts", d=dt.date(2000, 1, 1), ts=ts) is True  # date at midnight


def test_aware_timestamp_needs_aware_literal() -> None:
    ts = dt.datetime(2000, 1, 1, 12, tzinfo=dt.timezone.utc)
    assert ev("ts = '2000-01-01T12:00:00+00:00'", ts=ts) is True
    assert ev("ts > '2000-01-01 13:00:00+02:00'", ts=ts) is True
    with pytest.raises(ExprEvalError, match="time zone"):
        ev("ts > '2000-01-01'", ts=ts)


def test_bad_date_literal_is_an_error() -> None:
    with pytest.raises(ExprEvalError, match="not a valid date"):
        ev("d > 'yesterday'", d=dt.date(2000, 1, 1))
    with pytest.raises(ExprError, match="invalid literal"):
        compile_expr("d > DATE 'soon'", ["d"])


def test_bytes_and_uuid_comparisons() -> None:
    assert ev("b = c", b=b"\x00\xff", c=b"\x00\xff") is True
    assert ev("b < c", b=b"\x00", c=b"\x01") is True
    assert ev("b = 'abc'", b=b"abc") is True
    assert ev("b = c", b=bytearray(b"ab"), c=b"ab") is True
    u = uuid.UUID("12345678-1234-5678-1234-567812345678")
    assert ev("u = '12345678-1234-5678-1234-567812345678'", u=u) is True
    with pytest.raises(ExprEvalError, match="not a valid uuid"):
        ev("u = 'nope'", u=u)


def test_is_distinct_from() -> None:
    assert ev("a IS DISTINCT FROM b", a=None, b=None) is False
    assert ev("a IS DISTINCT FROM b", a=1, b=None) is True
    assert ev("a IS DISTINCT FROM b", a=1, b=1) is False
    assert ev("a IS DISTINCT FROM b", a=1, b=2) is True
    assert ev("a IS NOT DISTINCT FROM b", a=None, b=None) is True
    assert ev("a IS NOT DISTINCT FROM b", a=None, b=2) is False


# ---------------------------------------------------------------------------
# Three-valued logic

T, F, N = True, False, None
AND_TABLE = [(T, T, T), (T, F, F), (T, N, N), (F, T, F), (F, F, F), (F, N, F), (N, T, N), (N, F, F), (N, N, N)]
OR_TABLE = [(T, T, T), (T, F, T), (T, N, T), (F, T, T), (F, F, F), (F, N, N), (N, T, T), (N, F, N), (N, N, N)]


@pytest.mark.parametrize(("a", "b", "expected"), AND_TABLE)
def test_and_truth_table(a: bool | None, b: bool | None, expected: bool | None) -> None:
    assert ev("a AND b", a=a, b=b) is expected
    assert ev("(x = 1) AND (y = 1)", x=_num(a), y=_num(b)) is expected


@pytest.mark.parametrize(("a", "b", "expected"), OR_TABLE)
def test_or_truth_table(a: bool | None, b: bool | None, expected: bool | None) -> None:
    assert ev("a OR b", a=a, b=b) is expected
    assert ev("(x = 1) OR (y = 1)", x=_num(a), y=_num(b)) is expected


def _num(v: bool | None) -> int | None:
    return None if v is None else int(v)


@pytest.mark.parametrize(("a", "expected"), [(T, F), (F, T), (N, N)])
def test_not_truth_table(a: bool | None, expected: bool | None) -> None:
    assert ev("NOT a", a=a) is expected
    assert ev("NOT (x = 1)", x=_num(a)) is expected


def test_long_and_or_chains() -> None:
    cols = [f"c{i}" for i in range(300)]
    row = {c: True for c in cols}
    e = compile_expr(" AND ".join(cols), cols)
    assert e(row) is True
    assert e(dict(row, c299=None)) is None
    assert e(dict(row, c150=False, c299=None)) is False
    e = compile_expr(" OR ".join(f"{c} = 1" for c in cols), cols)
    assert e({c: 0 for c in cols}) is False
    assert e(dict({c: 0 for c in cols}, c7=1)) is True


def test_and_or_short_circuit() -> None:
    assert ev("d <> 0 AND n / d > 1", n=5, d=0) is False
    assert ev("d = 0 OR n / d > 1", n=5, d=0) is True


def test_and_or_precedence() -> None:
    assert ev("a OR b AND c", a=True, b=False, c=False) is True
    assert ev("(a OR b) AND c", a=True, b=False, c=False) is False
    assert ev("NOT a AND b", a=False, b=True) is True


def test_int_as_condition_mysql_boolean() -> None:
    assert ev("active AND x > 1", active=1, x=2) is True
    assert ev("active AND x > 1", active=0, x=2) is False
    assert ev("NOT active", active=0) is True
    with pytest.raises(ExprEvalError, match="expected a boolean condition, got text"):
        ev("name AND x > 1", name="yes", x=2)


# ---------------------------------------------------------------------------
# IN


@pytest.mark.parametrize(
    ("sql", "x", "expected"),
    [
        ("x IN (1, 2)", 1, T),
        ("x IN (1, 2)", 3, F),
        ("x IN (1, 2)", N, N),
        ("x IN (1, NULL)", 1, T),
        ("x IN (1, NULL)", 3, N),
        ("x IN (1, NULL)", N, N),
        ("x IN (NULL)", 1, N),
        ("x NOT IN (1, 2)", 1, F),
        ("x NOT IN (1, 2)", 3, T),
        ("x NOT IN (1, 2)", N, N),
        ("x NOT IN (1, NULL)", 1, F),
        ("x NOT IN (1, NULL)", 3, N),
        ("NOT (x IN (1, 2))", 3, T),
        ("x IN ('a', 'b')", "b", T),
        ("x IN ('a', 'b')", "c", F),
        ("x NOT IN ('a', 'b')", "c", T),
        ("x IN (TRUE)", True, T),
        ("x IN (1 + 1, 3)", 2, T),
    ],
)
def test_in(sql: str, x: Any, expected: bool | None) -> None:
    assert ev(sql, x=x) is expected


def test_in_with_columns() -> None:
    assert ev("x IN (a, b)", x=1, a=2, b=1) is True
    assert ev("x IN (a, b)", x=1, a=2, b=None) is None
    assert ev("x NOT IN (a, b)", x=1, a=2, b=3) is True
    assert ev("x NOT IN (a, b)", x=1, a=2, b=None) is None


def test_in_list_of_literals_is_a_frozenset() -> None:
    e = compile_expr("x IN ('DE', 'FR')", ["x"])
    assert " in _c" in e.source
    cells = [c.cell_contents for c in e.fn.__closure__ or ()]
    assert frozenset({"DE", "FR"}) in cells


# ---------------------------------------------------------------------------
# IS, BETWEEN


@pytest.mark.parametrize(
    ("sql", "results"),
    [
        ("a IS NULL", (F, F, T)),
        ("a IS NOT NULL", (T, T, F)),
        ("a ISNULL", (F, F, T)),
        ("a IS TRUE", (T, F, F)),
        ("a IS NOT TRUE", (F, T, T)),
        ("a IS FALSE", (F, T, F)),
        ("a IS NOT FALSE", (T, F, T)),
        ("a IS UNKNOWN", (F, F, T)),
    ],
)
def test_is(sql: str, results: tuple[bool, bool, bool]) -> None:
    for a, expected in zip((True, False, None), results):
        assert ev(sql, a=a) is expected


def test_is_null_on_expressions() -> None:
    assert ev("a + 1 IS NULL", a=None) is True
    assert ev("(a = 1) IS NULL", a=None) is True
    assert ev("(a > 1) IS TRUE", a=5) is True


@pytest.mark.parametrize(
    ("sql", "x", "expected"),
    [
        ("x BETWEEN 1 AND 3", 1, T),
        ("x BETWEEN 1 AND 3", 3, T),
        ("x BETWEEN 1 AND 3", 4, F),
        ("x BETWEEN 1 AND 3", N, N),
        ("x NOT BETWEEN 1 AND 3", 4, T),
        ("x NOT BETWEEN 1 AND 3", 2, F),
        ("x BETWEEN 1 AND NULL", 0, F),
        ("x BETWEEN 1 AND NULL", 5, N),
        ("x + 1 BETWEEN 1 AND 3", 2, T),
        ("x BETWEEN 'a' AND 'c'", "b", T),
        ("x BETWEEN 0.5 AND 1.5", 1, T),
    ],
)
def test_between(sql: str, x: Any, expected: bool | None) -> None:
    assert ev(sql, x=x) is expected


# ---------------------------------------------------------------------------
# LIKE


@pytest.mark.parametrize(
    ("pattern", "value", "expected"),
    [
        ("a%", "abc", T),
        ("a%", "bac", F),
        ("%c", "abc", T),
        ("%b%", "abc", T),
        ("a_c", "abc", T),
        ("a_c", "abbc", F),
        ("%", "", T),
        ("abc", "ABC", F),
        ("a.c", "abc", F),  # regex metacharacters are literal
        ("a.c", "a.c", T),
        ("(x)+[y]$^|\\\\d", "(x)+[y]$^|\\d", T),
        ("a*", "aaa", F),
        ("a*", "a*", T),
        ("a\\%", "a%", T),  # backslash is the default escape
        ("a\\%", "ab", F),
        ("a\\_b", "a_b", T),
        ("a\\_b", "axb", F),
        ("a%z", "a\nb\nz", T),  # % matches newlines
        ("é_", "éx", T),
    ],
)
def test_like(pattern: str, value: str, expected: bool) -> None:
    literal = pattern.replace("'", "''")
    assert ev(f"s LIKE '{literal}'", s=value) is expected
    assert ev(f"s NOT LIKE '{literal}'", s=value) is (not expected)
    assert ev("s LIKE p", s=value, p=pattern) is expected  # pattern known at run time only


def test_like_escape_clause() -> None:
    assert ev("s LIKE '100!%' ESCAPE '!'", s="100%") is True
    assert ev("s LIKE '100!%' ESCAPE '!'", s="1000") is False
    assert ev("s LIKE 'a\\%' ESCAPE ''", s="a\\bc") is True  # no escape character
    assert ev("s NOT LIKE '100!%' ESCAPE '!'", s="1000") is True
    with pytest.raises(ExprError, match="must not end with the escape character"):
        compile_expr("s LIKE 'abc\\'", ["s"])
    with pytest.raises(ExprError, match="one character"):
        compile_expr("s LIKE 'abc' ESCAPE 'xy'", ["s"])


def test_ilike() -> None:
    assert ev("s ILIKE 'ab%'", s="ABC") is True
    assert ev("s ILIKE 'ab%'", s="xABC") is False
    assert ev("s NOT ILIKE 'ab%'", s="ABC") is False
    assert ev("s ILIKE 'ÄB_'", s="äbc") is True


def test_like_null_and_type_errors() -> None:
    assert ev("s LIKE 'a%'", s=None) is None
    assert ev("s NOT LIKE 'a%'", s=None) is None
    assert ev("s LIKE NULL", s="a") is None
    assert ev("s LIKE p", s="a", p=None) is None
    with pytest.raises(ExprEvalError, match="LIKE expects text, got integer 5"):
        ev("s LIKE '5%'", s=5)


# ---------------------------------------------------------------------------
# CASE, COALESCE, NULLIF


def test_searched_case() -> None:
    sql = "CASE WHEN a > 10 THEN 'big' WHEN a > 5 THEN 'medium' ELSE 'small' END"
    assert ev(sql, a=11) == "big"
    assert ev(sql, a=6) == "medium"
    assert ev(sql, a=1) == "small"
    assert ev(sql, a=None) == "small"  # NULL condition is not TRUE
    assert ev("CASE WHEN a > 10 THEN 1 END", a=1) is None
    assert ev("CASE WHEN flag THEN 1 ELSE 0 END", flag=None) == 0


def test_simple_case() -> None:
    sql = "CASE status WHEN 'a' THEN 1 WHEN 'b' THEN 2 ELSE 0 END"
    assert ev(sql, status="a") == 1
    assert ev(sql, status="b") == 2
    assert ev(sql, status="c") == 0
    assert ev(sql, status=None) == 0
    assert ev("CASE a + 1 WHEN 2 THEN 'two' WHEN 3 THEN 'three' END", a=2) == "three"
    assert ev("CASE a WHEN NULL THEN 'null' ELSE 'other' END", a=None) == "other"


def test_case_is_lazy() -> None:
    assert ev("CASE WHEN d = 0 THEN NULL ELSE n / d END", n=4, d=0) is None


def test_coalesce() -> None:
    assert ev("COALESCE(a, b, 'x')", a=None, b=None) == "x"
    assert ev("COALESCE(a, b, 'x')", a=None, b="b") == "b"
    assert ev("COALESCE(a, b, 'x')", a="a", b="b") == "a"
    assert ev("COALESCE(a, b)", a=None, b=None) is None
    assert ev("COALESCE(a + 1, 0)", a=None) == 0
    assert ev("COALESCE(a + 1, 0)", a=1) == 2
    assert ev("COALESCE(a, 1 / d)", a=5, d=0) == 5  # lazy


def test_nullif() -> None:
    assert ev("NULLIF(a, 0)", a=0) is None
    assert ev("NULLIF(a, 0)", a=5) == 5
    assert ev("NULLIF(a, 0)", a=None) is None
    assert ev("NULLIF(a, NULL)", a=3) == 3
    assert ev("NULLIF(a + 1, 1)", a=0) is None
    assert ev("NULLIF(a + 1, 1)", a=1) == 2
    assert ev("NULLIF(s, '')", s="") is None
    assert same(ev("n / NULLIF(d, 0)", n=1, d=0), None)


def test_mysql_if() -> None:
    assert ev("IF(a > 1, 'y', 'n')", a=2) == "y"
    assert ev("IF(a > 1, 'y', 'n')", a=None) == "n"


# ---------------------------------------------------------------------------
# Text


def test_dpipe_concatenation() -> None:
    assert ev("a || b", a="x", b="y") == "xy"
    assert ev("a || ' ' || b", a="x", b="y") == "x y"
    assert ev("a || b", a="x", b=None) is None
    assert ev("a || 1", a="x") == "x1"
    assert ev("a || b", a="p", b=Decimal("1.50")) == "p1.50"
    assert ev("a || b", a="p", b=True) == "ptrue"
    assert ev("a || b", a="d", b=dt.date(2000, 1, 2)) == "d2000-01-02"


def test_concat_skips_nulls() -> None:
    assert ev("CONCAT(a, b, c)", a="x", b=None, c="z") == "xz"
    assert ev("CONCAT(a, b)", a=None, b=None) == ""
    assert ev("CONCAT(a, '-', n)", a="id", n=7) == "id-7"
    assert ev("CONCAT_WS(',', a, b, c)", a="x", b=None, c="z") == "x,z"


@pytest.mark.parametrize(
    ("sql", "s", "expected"),
    [
        ("UPPER(s)", "abcß", "ABCSS"),
        ("LOWER(s)", "ÀBC", "àbc"),
        ("TRIM(s)", "  a b  ", "a b"),
        ("TRIM(s)", "\ta\n", "\ta\n"),  # spaces only, as in SQL
        ("LTRIM(s)", "  a  ", "a  "),
        ("RTRIM(s)", "  a  ", "  a"),
        ("TRIM(BOTH 'x' FROM s)", "xxaxx", "a"),
        ("TRIM(LEADING 'x' FROM s)", "xxaxx", "axx"),
        ("TRIM(TRAILING 'x' FROM s)", "xxaxx", "xxa"),
        ("LTRIM(s, 'xy')", "xyxay", "ay"),
        ("RTRIM(s, 'xy')", "xyxay", "xyxa"),
        ("LENGTH(s)", "héllo", 5),
        ("CHAR_LENGTH(s)", "héllo", 5),
        ("SUBSTRING(s, 2, 3)", "hello", "ell"),
        ("SUBSTRING(s, 2)", "hello", "ello"),
        ("SUBSTR(s, 2, 3)", "hello", "ell"),
        ("SUBSTR(s, 4)", "hello", "lo"),
        ("SUBSTRING(s FROM 2 FOR 2)", "hello", "el"),
        ("SUBSTRING(s, 0, 3)", "hello", "he"),
        ("SUBSTRING(s, -5, 3)", "hello", ""),
        ("SUBSTRING(s, 10)", "hello", ""),
        ("SUBSTRING(s, 1, 0)", "hello", ""),
        ("SUBSTRING(s, 2, 3)", "héllo", "éll"),
        ("REPLACE(s, 'l', 'L')", "hello", "heLLo"),
        ("REPLACE(s, '', 'x')", "ab", "ab"),
        ("REPLACE(s, '.', '')", "a.b.c", "abc"),
    ],
)
def test_text_functions(sql: str, s: str, expected: Any) -> None:
    assert same(ev(sql, s=s), expected)


@pytest.mark.parametrize(
    "sql",
    ["UPPER(s)", "LOWER(s)", "TRIM(s)", "LTRIM(s)", "RTRIM(s)", "LENGTH(s)", "SUBSTRING(s, 2)",
     "SUBSTRING(s, 1, 2)", "REPLACE(s, 'a', 'b')", "CONCAT_WS(s, 'a')"],
)
def test_text_functions_null(sql: str) -> None:
    assert ev(sql, s=None) is None


def test_text_function_errors() -> None:
    with pytest.raises(ExprEvalError, match=r"UPPER\(\) expects text, got integer 1"):
        ev("UPPER(s)", s=1)
    with pytest.raises(ExprEvalError, match="negative substring length"):
        ev("SUBSTRING(s, 1, -1)", s="abc")
    with pytest.raises(ExprEvalError, match=r"SUBSTRING\(\) expects an integer"):
        ev("SUBSTRING(s, 1.5)", s="abc")


def test_length_of_bytes() -> None:
    assert ev("LENGTH(b)", b=b"\x00\x01\x02") == 3


# ---------------------------------------------------------------------------
# Numeric functions


@pytest.mark.parametrize(
    ("sql", "x", "expected"),
    [
        ("ROUND(x)", Decimal("2.5"), Decimal("3")),
        ("ROUND(x)", Decimal("-2.5"), Decimal("-3")),
        ("ROUND(x)", Decimal("2.4"), Decimal("2")),
        ("ROUND(x, 2)", Decimal("2.345"), Decimal("2.35")),
        ("ROUND(x, 1)", Decimal("2"), Decimal("2.0")),
        ("ROUND(x, -2)", Decimal("1250"), Decimal("1300")),
        ("ROUND(x)", 7, 7),
        ("ROUND(x, 2)", 7, 7),
        ("ROUND(x, -1)", 15, 20),
        ("ROUND(x)", 2.5, 2.0),
        ("ROUND(x, 1)", 2.25, 2.2),
        ("ROUND(x / 3.0, 2)", 10, Decimal("3.33")),
        ("ABS(x)", -3, 3),
        ("ABS(x)", Decimal("-1.50"), Decimal("1.50")),
        ("ABS(x)", -0.5, 0.5),
        ("FLOOR(x)", Decimal("1.7"), Decimal("1")),
        ("FLOOR(x)", Decimal("-1.2"), Decimal("-2")),
        ("FLOOR(x)", 1.7, 1.0),
        ("FLOOR(x)", 4, 4),
        ("CEIL(x)", Decimal("1.2"), Decimal("2")),
        ("CEILING(x)", Decimal("-1.7"), Decimal("-1")),
        ("CEIL(x)", 1.2, 2.0),
        ("CEIL(x)", 4, 4),
    ],
)
def test_numeric_functions(sql: str, x: Any, expected: Any) -> None:
    assert same(ev(sql, x=x), expected)


@pytest.mark.parametrize("sql", ["ROUND(x)", "ROUND(x, 2)", "ABS(x)", "FLOOR(x)", "CEIL(x)"])
def test_numeric_functions_null(sql: str) -> None:
    assert ev(sql, x=None) is None


def test_numeric_function_errors() -> None:
    with pytest.raises(ExprEvalError, match=r"ABS\(\) expects a number, got text"):
        ev("ABS(x)", x="1")


# ---------------------------------------------------------------------------
# CAST


@pytest.mark.parametrize(
    ("sql", "x", "expected"),
    [
        ("CAST(x AS text)", 42, "42"),
        ("CAST(x AS text)", Decimal("1.50"), "1.50"),
        ("CAST(x AS text)", True, "true"),
        ("CAST(x AS text)", dt.date(2000, 1, 2), "2000-01-02"),
        ("CAST(x AS text)", b"abc", "abc"),
        ("CAST(x AS varchar)", 1.5, "1.5"),
        ("CAST(x AS varchar(3))", "abcdef", "abc"),
        ("x::text", 7, "7"),
        ("CAST(x AS int)", "42", 42),
        ("CAST(x AS integer)", " -42 ", -42),
        ("CAST(x AS int)", Decimal("2.5"), 3),
        ("CAST(x AS int)", Decimal("-2.5"), -3),
        ("CAST(x AS int)", 2.4, 2),
        ("CAST(x AS int)", True, 1),
        ("CAST(x AS bigint)", "9223372036854775807", 9223372036854775807),
        ("x::int", "5", 5),
        ("CAST(x AS numeric)", "1.50", Decimal("1.50")),
        ("CAST(x AS numeric)", 3, Decimal("3")),
        ("CAST(x AS numeric)", 0.1, Decimal("0.1")),
        ("CAST(x AS decimal(5, 2))", Decimal("1.005"), Decimal("1.01")),
        ("CAST(x AS numeric(5, 2))", "3", Decimal("3.00")),
        ("x::numeric", "2", Decimal("2")),
        ("CAST(x AS date)", "2000-01-02", dt.date(2000, 1, 2)),
        ("CAST(x AS date)", dt.datetime(2000, 1, 2, 3, 4), dt.date(2000, 1, 2)),
        ("x::date", dt.date(2000, 1, 2), dt.date(2000, 1, 2)),
        ("CAST(x AS boolean)", "yes", True),
        ("CAST(x AS boolean)", 0, False),
        ("CAST(x AS double precision)", "1.5", 1.5),
        ("CAST(x AS timestamp)", "2000-01-02 03:04:05", dt.datetime(2000, 1, 2, 3, 4, 5)),
    ],
)
def test_cast(sql: str, x: Any, expected: Any) -> None:
    assert same(ev(sql, x=x), expected)


@pytest.mark.parametrize("sql", ["CAST(x AS text)", "CAST(x AS int)", "CAST(x AS numeric)", "CAST(x AS date)", "x::int"])
def test_cast_null(sql: str) -> None:
    assert ev(sql, x=None) is None


def test_cast_errors() -> None:
    with pytest.raises(ExprEvalError, match="invalid input syntax for type integer: 'abc'"):
        ev("CAST(x AS int)", x="abc")
    with pytest.raises(ExprEvalError, match="integer out of range"):
        ev("CAST(x AS int)", x=2**31)
    with pytest.raises(ExprEvalError, match="smallint out of range"):
        ev("CAST(x AS smallint)", x=40000)
    with pytest.raises(ExprEvalError, match="invalid input syntax for type numeric"):
        ev("CAST(x AS numeric)", x="1,5")
    with pytest.raises(ExprEvalError, match="numeric field overflow"):
        ev("CAST(x AS numeric(3, 2))", x=Decimal("12.5"))
    with pytest.raises(ExprEvalError, match="invalid input syntax for type date"):
        ev("CAST(x AS date)", x="2000-13-01")
    with pytest.raises(ExprEvalError, match="cannot cast integer 5 to date"):
        ev("CAST(x AS date)", x=5)


def test_cast_of_literal_is_folded_and_checked_at_compile_time() -> None:
    assert same(ev("CAST('2000-01-02' AS date)"), dt.date(2000, 1, 2))
    assert same(ev("'7'::int + 1"), 8)
    with pytest.raises(ExprError, match="invalid literal.*invalid input syntax for type integer"):
        compile_expr("CAST('x' AS int)", [])


def test_unsupported_cast_target() -> None:
    with pytest.raises(ExprError, match="unsupported SQL: CAST to"):
        compile_expr("CAST(x AS json)", ["x"])
    with pytest.raises(ExprError, match="unsupported SQL: CAST to"):
        compile_expr("x::text[]", ["x"])


# ---------------------------------------------------------------------------
# Column names


def test_quoted_identifiers() -> None:
    cols = ["firstName", "order"]
    assert compile_expr('"firstName"', cols)({"firstName": "A", "order": 1}) == "A"
    assert compile_expr("`firstName`", cols)({"firstName": "A", "order": 1}) == "A"
    assert compile_expr('"order" + 1', cols)({"firstName": "A", "order": 1}) == 2
    assert compile_expr('`we"ird` = "a""b"', ['we"ird', 'a"b']).columns == frozenset({'we"ird', 'a"b'})


def test_quoted_identifier_is_case_sensitive() -> None:
    with pytest.raises(ExprError, match="unknown column 'firstname'.*did you mean 'firstName'"):
        compile_expr('"firstname" = 1', ["firstName"])


def test_unquoted_identifier_resolution() -> None:
    e = compile_expr("firstName = 'A'", ["id", "firstName"])
    assert e.columns == frozenset({"firstName"})
    assert e({"id": 1, "firstName": "A"}) is True
    e = compile_expr("FIRSTNAME = 'A'", ["id", "firstName"])
    assert e.columns == frozenset({"firstName"})
    # An exact match wins over case-insensitive ones.
    e = compile_expr("name", ["name", "NAME"])
    assert e({"name": 1, "NAME": 2}) == 1


def test_ambiguous_unquoted_identifier() -> None:
    with pytest.raises(ExprError, match="ambiguous column 'Name': matches 'name', 'NAME'"):
        compile_expr("Name = 1", ["name", "NAME"])


def test_keyword_like_column_names() -> None:
    row = {"date": dt.date(2000, 1, 1), "user": "u", "type": "t", "value": 1, "position": 2}
    assert compile_expr("date > '1999-01-01' AND user = 'u' AND type = 't' AND value < position", list(row))(row) is True


def test_columns_are_resolved_names() -> None:
    e = compile_expr("A + a + `B`", ["a", "B", "c"])
    assert e.columns == frozenset({"a", "B"})


# ---------------------------------------------------------------------------
# Compile errors


def test_unknown_column_lists_available_columns() -> None:
    with pytest.raises(ExprError) as info:
        compile_expr("foo = 1", ["a", "b", "c"])
    assert str(info.value) == "unknown column 'foo' (columns: a, b, c)"


def test_double_quoted_string_hint() -> None:
    with pytest.raises(ExprError, match="unknown column 'draft'.*use single quotes for string literals"):
        compile_expr('status = "draft"', ["status"])


@pytest.mark.parametrize(
    ("sql", "message"),
    [
        ("a = ", "syntax error in 'a = ': incomplete expression"),
        ("a = 1)", r"syntax error in 'a = 1\)': unexpected token near '\)' at line 1, column 6"),
        ("(a", "syntax error"),
        ("'abc", "syntax error.*unterminated"),
        ("a AND", "syntax error"),
        ("", "empty expression"),
        ("   ", "empty expression"),
        ("a; b", "expected a single expression, got 2"),
        ("a b", "unexpected alias 'b'"),
    ],
)
def test_syntax_errors(sql: str, message: str) -> None:
    with pytest.raises(ExprError, match=message):
        compile_expr(sql, ["a", "b"])


@pytest.mark.parametrize(
    ("sql", "message"),
    [
        ("foo(a)", r"unsupported function FOO\(\) in 'foo\(a\)' \(supported: ABS, CAST, "),
        ("sum(a)", r"unsupported SQL: aggregate function SUM\(\)"),
        ("count(*)", r"aggregate function COUNT\(\)"),
        ("row_number() OVER (ORDER BY a)", "unsupported SQL: window functions"),
        ("sum(a) OVER ()", "unsupported SQL: window functions"),
        ("a IN (SELECT 1)", "unsupported SQL"),
        ("a = (SELECT 1)", "unsupported SQL: subqueries"),
        ("current_date", r"unsupported function CURRENT_DATE\(\)"),
        ("a = $1", "unsupported SQL: parameters"),
        ("t.a = 1", "unsupported SQL: COLUMN with TABLE"),
        ("a BETWEEN SYMMETRIC 1 AND 2", "unsupported SQL: BETWEEN with SYMMETRIC"),
        ("ROUND(a, 1, 1)", "unsupported SQL: ROUND with TRUNCATE"),
        ("a ~ 'x'", r"unsupported function REGEXP_LIKE\(\)"),
        ("a IN ()", "empty IN list"),
        ("a IS DISTINCT FROM b AND a LIKE ANY ('x')", "unsupported SQL: LIKE ANY/ALL"),
    ],
)
def test_unsupported_constructs(sql: str, message: str) -> None:
    with pytest.raises(ExprError, match=message):
        compile_expr(sql, ["a", "b"])


def test_error_classes() -> None:
    assert issubclass(ExprError, ValueError)
    assert issubclass(ExprEvalError, ValueError)
    assert issubclass(MissingColumn, ExprEvalError)
    assert issubclass(MissingColumn, KeyError)


# ---------------------------------------------------------------------------
# Missing columns, the Expr object


def test_missing_column() -> None:
    e = compile_expr("a > 1 OR b > 1", ["a", "b"])
    with pytest.raises(MissingColumn) as info:
        e({"a": 5})  # even though OR would not need b
    assert info.value.column == "b"
    assert info.value.args == ("b",)
    assert "row has no column 'b'" in str(info.value)
    assert "a > 1 OR b > 1" in str(info.value)
    with pytest.raises(KeyError):
        e.test({"b": 5})


def test_expr_object() -> None:
    e = compile_expr("a > 1", ["a"])
    assert isinstance(e, Expr)
    assert e.sql == "a > 1"
    assert e.fn({"a": 2}) is True
    assert e({"a": 2}) is True
    assert e.test({"a": 2}) is True
    assert e.test({"a": None}) is False
    assert e.test({"a": 0}) is False
    with pytest.raises(AttributeError):
        e.sql = "x"  # type: ignore[misc]
    assert "a > 1" in repr(e)


def test_test_of_non_boolean_result() -> None:
    e = compile_expr("a", ["a"])
    assert e.test({"a": 1}) is False  # only SQL TRUE passes
    assert e.test({"a": True}) is True


def test_expr_built_by_hand_without_predicate() -> None:
    e = Expr(sql="x", columns=frozenset({"x"}), fn=lambda row: row["x"])
    assert e.test({"x": True}) is True
    assert e.test({"x": None}) is False


def test_is_true() -> None:
    assert is_true(True) is True
    assert is_true(None) is False
    assert is_true(False) is False
    assert is_true(1) is False


def test_row_may_be_any_mapping_and_extra_keys_are_ignored() -> None:
    from types import MappingProxyType

    e = compile_expr("a = 1", ["a", "b"])
    assert e(MappingProxyType({"a": 1, "zzz": object()})) is True


def test_runtime_error_names_the_expression() -> None:
    e = compile_expr("price / qty > 1", ["price", "qty"])
    with pytest.raises(ExprEvalError) as info:
        e({"price": 1, "qty": 0})
    assert info.value.sql == "price / qty > 1"
    assert str(info.value) == "division by zero: 1 / 0 (in expression: price / qty > 1)"


def test_decimal_quotient_has_no_positive_exponent() -> None:
    r = ev("a / 100.0", a=1000)
    assert same(r, Decimal("10"))
    assert str(r) == "10"
    assert str(ev("a / b", a=Decimal("1E+3"), b=Decimal("0.01"))) == "100000"


def test_too_deeply_nested_is_a_compile_error() -> None:
    with pytest.raises(ExprError, match="too deeply nested"):
        compile_expr(" + ".join(["a"] * 1000), ["a"])
    with pytest.raises(ExprError, match="too deeply nested"):
        compile_expr("NOT " * 500 + "a", ["a"])


def test_unknown_column_with_unordered_columns_is_sorted() -> None:
    with pytest.raises(ExprError, match=r"unknown column 'x' \(columns: a, b, c\)$"):
        compile_expr("x", {"c", "a", "b"})


def test_date_literal_fast_path_keeps_sql_semantics() -> None:
    e = compile_expr("d = '2000-01-01'", ["d"])
    assert e({"d": dt.date(2000, 1, 1)}) is True
    assert e({"d": "2000-01-01"}) is True
    assert e({"d": dt.datetime(2000, 1, 1)}) is True
    assert e({"d": dt.datetime(2000, 1, 1, 0, 0, 1)}) is False
    assert e({"d": None}) is None
    with pytest.raises(ExprEvalError, match="cannot compare"):
        e({"d": 20000101})
