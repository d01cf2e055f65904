"""The canonical texts computed in Python rather than in SQL: JSON documents and their numbers.

Neither engine can write JSON canonically (jsonb and MariaDB's verbatim text order keys
differently, jsonb keeps a number's scale), so both sides' JSON values are fetched and
canonicalised here, by the same code, which is what makes the two texts comparable. Pure
functions with no I/O, kept apart from the per-engine SQL so they can be tested from strings.
"""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any


def canonical_json(value: Any) -> str | None:
    """A JSON document (text or bytes) in one canonical form: keys sorted, no whitespace,
    numbers by value (``1.0``, ``1`` and ``1e0`` alike; ``1.50`` and ``15e-1`` alike); a text
    that is not JSON stays itself, marked, so it can only equal the same text. None for NULL.

    Parsing and writing run in the json module's C code. Integral numbers become ints (written
    as their digits); any other number is replaced while parsing by its exact canonical text
    ``<digits>e<exponent>`` behind a NUL character, which no string of the document can start
    with unless the document spells ``\\u0000`` — such documents take a slower exact path
    that writes numbers bare, so a number never equals a string."""
    if value is None:
        return None
    text = value.decode("utf-8", "surrogateescape") if isinstance(value, (bytes, bytearray)) else str(value)
    try:
        if "\\u0000" not in text:
            return _JSON_OUT.encode(_JSON_IN.decode(text))
        return _dump(json.loads(text, parse_float=Decimal, parse_constant=_Constant))
    except (ValueError, RecursionError):
        return "!" + text


def _marked(text: str) -> str:
    return "\x00" + text


_BIG = 400  # integral numbers up to 10^400 are written as ints, larger ones as digits/exponent


def _canonical_float(text: str) -> int | str:
    """A JSON number with a fraction or exponent: its int if integral, else ``\\x00<digits>e<exp>``
    (exactly :func:`_number`'s text), by string work alone."""
    negative = text[0] == "-"
    mantissa, _, exponent = text.lstrip("-").lower().partition("e")
    whole, _, fraction = mantissa.partition(".")
    digits = (whole + fraction).lstrip("0")
    if not digits:
        return 0
    stripped = digits.rstrip("0")
    exp = (int(exponent) if exponent else 0) - len(fraction) + len(digits) - len(stripped)
    sign = "-" if negative else ""
    if 0 <= exp + len(stripped) <= _BIG and exp >= 0:
        return int(sign + stripped + "0" * exp)
    return f"\x00{sign}{stripped}e{exp}"


def _canonical_int(text: str) -> int | str:
    """A JSON integer: itself, unless beyond 10^400 (then as :func:`_canonical_float`)."""
    return int(text) if len(text.lstrip("-")) <= _BIG else _canonical_float(text)


_JSON_IN = json.JSONDecoder(parse_float=_canonical_float, parse_int=_canonical_int, parse_constant=_marked)
_JSON_OUT = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False)


class _Constant(str):
    """NaN / Infinity, which Python's JSON parser accepts and databases do not."""


def _dump(v: Any) -> str:
    if v is None:
        return "null"
    if v is True:
        return "true"
    if v is False:
        return "false"
    if isinstance(v, _Constant):
        return "#" + v
    if isinstance(v, str):
        return json.dumps(v, ensure_ascii=False)
    if isinstance(v, (int, Decimal)):
        return "#" + _number(Decimal(v))
    if isinstance(v, list):
        return "[" + ",".join(_dump(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{" + ",".join(json.dumps(k, ensure_ascii=False) + ":" + _dump(v[k]) for k in sorted(v)) + "}"
    return json.dumps(str(v), ensure_ascii=False)


def _number(d: Decimal) -> str:
    if not d.is_finite():
        return str(d)
    if d.is_zero():
        return "0"
    sign, digits, exponent = d.as_tuple()
    assert isinstance(exponent, int)
    text = "".join(map(str, digits))
    stripped = text.rstrip("0")
    return f"{'-' if sign else ''}{stripped}e{exponent + len(text) - len(stripped)}"


def _py_piece(text: str | None) -> str:
    return "N" if text is None else f"{len(text)}:{text}"
