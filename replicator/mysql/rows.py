"""Decode the row images of MySQL/MariaDB binlog rows events into exact Python values.

Why our own decoder
-------------------
python-mysql-replication (``pymysqlreplication``) gives us the replication connection, the
packet framing and the parsing of TableMapEvents (column types and the metadata that
``binlog_row_metadata=FULL`` adds: names, charsets, signedness, ENUM/SET members, primary
key). Its row-value decoding we do not use, for two reasons:

* **Speed.** It decodes every value through several Python method calls and attribute
  lookups on the packet wrapper; the DESIGN notes measure ~30k rows/s and name value decoding
  as the MySQL path's bottleneck. Here everything that depends only on the table map (which
  function decodes a column, struct formats, decimal layouts, charsets) is worked out once per
  table map, and the per-row loop only slices bytes: ~7x faster on a typical 6-column table.
  The loop over the rows of an event is one function generated per table map, event kind and
  columns-present bitmap (:func:`_event_reader`); for updates the before image is decoded only
  where its bytes differ from the after image's.
* **Exactness.** Checked against MariaDB 10.11 (see ``test_library_quirks_we_avoid`` in
  ``tests/test_mysql_rows.py``), version 1.0.17 of the library: turns zero dates into a silent
  ``None`` and a zero TIMESTAMP into 1970-01-01; fails the whole event on an
  ALLOW_INVALID_DATES date such as 2024-02-31; returns TIMESTAMP as a naive datetime, YEAR 0000
  as 1900, BIT as a ``'0101'`` string, SET as a Python ``set`` and the empty SET as ``None``;
  decodes negative TIME(n) with a fraction wrongly (``-00:00:01.010101`` becomes
  ``-1.989899 s``) and a negative classic TIME as a large positive one; drops the trailing
  zero bytes of BINARY(n) and returns empty binary values as ``str`` ``''``; fails on MySQL
  latin1 bytes that cp1252 leaves undefined (0x81, 0x8D, 0x8F, 0x90, 0x9D); reads the ENUM/SET
  member names of the table map as UTF-8 whatever the column's charset (a latin1 ``'é'``
  becomes ``''``, ``'Ã©'`` becomes ``'é'``); fills columns
  absent from a MINIMAL row image with ``None``, like NULL; and keeps its ``none_sources``
  (why a value is ``None``) per event rather than per row. A replicator that promises zero
  information loss can use none of that.

What it does
------------
:class:`RowDecoder` is built once per table map (a ``pymysqlreplication.table.Table``). Its
:meth:`RowDecoder.decode` takes the body of one rows event -- starting at the
columns-present bitmap(s), without the 4-byte checksum; :func:`rows_body` cuts it out of a
library ``RowsEvent`` -- and returns ``(before, after)`` per row: ``(None, row)`` for a
write, ``(row, None)`` for a delete, ``(before, after)`` for an update.
:meth:`RowDecoder.read_event` does the same on a body lying inside a larger buffer (the binlog
packet, not copied) and can build the caller's record per row instead of the pair, in the
same generated loop (the source builds its change records so). :meth:`RowDecoder.read_raw`
writes each row straight as one text in a target's format (:data:`COPY_TEXT`,
:data:`MYSQL_VALUES`; see :mod:`replicator.mysql.passthrough`) with the same value decoding,
for the tables whose columns all have a kind the format takes (:meth:`RowDecoder.raw_kinds`).
Pure functions of bytes: no I/O, no server round trip.

Value mapping (SQL NULL is ``None`` everywhere; a column absent from the row image, i.e.
``binlog_row_image`` other than FULL, is *omitted* from the dict, never ``None``):

=============================  ===========================================================
TINYINT..BIGINT, MEDIUMINT     ``int`` (signedness from the table map)
DECIMAL(p, s)                  ``decimal.Decimal``, exact (all 65 digits)
FLOAT / DOUBLE                 ``float`` (FLOAT is the single-precision value widened)
DATE                           ``datetime.date``
DATETIME(0..6)                 naive ``datetime.datetime``
TIMESTAMP(0..6)                aware ``datetime.datetime`` in UTC (the binlog holds seconds
                               since the epoch, whatever the server or session time zone)
TIME(0..6)                     ``datetime.timedelta`` (negative and > 24 h included)
YEAR                           ``int`` (1901..2155; YEAR 0000 stays ``0``)
CHAR/VARCHAR/TEXT              ``str`` decoded with the column's charset (MySQL latin1 is
                               cp1252 with the five undefined bytes mapped to C1 controls,
                               as MySQL does)
BINARY(n)                      ``bytes`` padded back to n bytes with zero bytes (the binlog
                               strips trailing zero bytes from BINARY values)
VARBINARY / BLOBs              ``bytes`` (trailing zero bytes kept)
BIT(n)                         ``int``
ENUM                           ``str`` (``''`` for the error value, index 0)
SET                            ``str``: members in definition order joined by ``,``; ``''``
                               for the empty set. Member names of a non-UTF-8 column are
                               decoded again with its charset; a name the library could not
                               read raises DataError when a row uses it
JSON                           MariaDB: JSON is LONGTEXT, so the binlog carries the document
                               text and the value is that ``str``, exactly as stored.
                               MySQL's binary JSON (type 245): parsed with the library's
                               ``parse_json`` and converted to plain Python objects with
                               ``str`` keys and strings
GEOMETRY                       ``bytes``: the server's internal format (4-byte little-endian
                               SRID followed by the WKB), exactly what ``SELECT g`` returns
=============================  ===========================================================

Zero and invalid dates (``'0000-00-00'``, ``'2024-00-10'``, ``'2024-02-31'`` under
ALLOW_INVALID_DATES, a zero DATETIME or TIMESTAMP) have no Python value. The
``zero_date`` policy decides: ``"error"`` (default) raises
:class:`~replicator.errors.DataError` naming the table, the row's key and the column, and
saying how to change the policy; ``"null"`` turns them into ``None``.

Not supported: MariaDB's pre-10.1 temporal formats *with fractional seconds* (columns created
under ``mysql56_temporal_format=OFF`` as TIME(n)/DATETIME(n)/TIMESTAMP(n), n > 0): their
table-map entries carry no precision, so their width cannot be known from the binlog (a
``check`` can find them: ``information_schema.COLUMNS.COLUMN_TYPE`` reads e.g.
``time(3) /* mariadb-5.3 */``). The classic formats without fractional seconds (binlog types
TIME, DATETIME, TIMESTAMP) are decoded. MySQL 8's partial JSON updates
(PARTIAL_UPDATE_ROWS_EVENT) are not supported.
"""

from __future__ import annotations

import codecs
import re
import struct
from collections.abc import Callable, Sequence
from datetime import date, datetime, timedelta, timezone
from dataclasses import dataclass
from decimal import MAX_EMAX, MIN_EMIN, Context, Decimal
from functools import partial
from typing import Any, Final, Literal

from pymysql.converters import escape_string

from replicator.errors import CheckFailed, DataError

__all__ = ["RowDecoder", "ZeroDatePolicy", "rows_body", "rows_kind"]

ZeroDatePolicy = Literal["error", "null"]
Row = dict[str, Any]
RowPair = tuple[Row | None, Row | None]

# Binlog column types (pymysqlreplication.constants.FIELD_TYPE; repeated here so the module
# is readable on its own and mypy needs no stubs).
T_DECIMAL: Final = 0
T_TINY: Final = 1
T_SHORT: Final = 2
T_LONG: Final = 3
T_FLOAT: Final = 4
T_DOUBLE: Final = 5
T_NULL: Final = 6
T_TIMESTAMP: Final = 7
T_LONGLONG: Final = 8
T_INT24: Final = 9
T_DATE: Final = 10
T_TIME: Final = 11
T_DATETIME: Final = 12
T_YEAR: Final = 13
T_NEWDATE: Final = 14
T_VARCHAR: Final = 15
T_BIT: Final = 16
T_TIMESTAMP2: Final = 17
T_DATETIME2: Final = 18
T_TIME2: Final = 19
T_JSON: Final = 245
T_NEWDECIMAL: Final = 246
T_ENUM: Final = 247
T_SET: Final = 248
T_BLOB: Final = 252
T_VAR_STRING: Final = 253
T_STRING: Final = 254
T_GEOMETRY: Final = 255

_TYPE_NAMES: Final = {
    T_TINY: "TINYINT", T_SHORT: "SMALLINT", T_LONG: "INT", T_FLOAT: "FLOAT",
    T_DOUBLE: "DOUBLE", T_TIMESTAMP: "TIMESTAMP", T_LONGLONG: "BIGINT", T_INT24: "MEDIUMINT",
    T_DATE: "DATE", T_TIME: "TIME", T_DATETIME: "DATETIME", T_YEAR: "YEAR",
    T_NEWDATE: "DATE", T_VARCHAR: "VARCHAR", T_BIT: "BIT", T_TIMESTAMP2: "TIMESTAMP",
    T_DATETIME2: "DATETIME", T_TIME2: "TIME", T_JSON: "JSON", T_NEWDECIMAL: "DECIMAL",
    T_ENUM: "ENUM", T_SET: "SET", T_BLOB: "BLOB/TEXT", T_VAR_STRING: "VARCHAR",
    T_STRING: "CHAR", T_GEOMETRY: "GEOMETRY",
}

# Event type codes of the rows events (v1 = MariaDB and MySQL 5.1-5.5, v2 = MySQL >= 5.6).
_KIND_BY_EVENT_TYPE: Final = {23: "write", 24: "update", 25: "delete",
                              30: "write", 31: "update", 32: "delete"}
_PARTIAL_UPDATE_ROWS_EVENT: Final = 39

# Per-column decoding kinds (the first field of a compiled column).
_K_UNPACK: Final = 0  # fixed width, a = Struct.unpack_from, b = width: a(buf, pos)[0]
_K_FIXED: Final = 1  # fixed width, a = fn(buf, pos), b = width
_K_TEXT: Final = 2  # length-prefixed, a = prefix bytes, b = Python codec name: str(...)
_K_BYTES: Final = 3  # length-prefixed, a = prefix bytes: bytes(...)
_K_VAR: Final = 4  # length-prefixed, a = prefix bytes, b = fn(bytes_slice)

_UTC: Final = timezone.utc
_S_B = struct.Struct("<b")
_S_UB = struct.Struct("<B")
_S_H = struct.Struct("<h")
_S_UH = struct.Struct("<H")
_S_I = struct.Struct("<i")
_S_UI = struct.Struct("<I")
_S_Q = struct.Struct("<q")
_S_UQ = struct.Struct("<Q")
_S_F = struct.Struct("<f")
_S_D = struct.Struct("<d")
_S_BQ = struct.Struct(">Q")

_FSP_BYTES: Final = (0, 1, 1, 2, 2, 3, 3)
_DIG2BYTES: Final = (0, 1, 1, 2, 2, 3, 3, 4, 4, 4)  # decimal: digits -> bytes


class _BadDate(Exception):
    """A zero or invalid date under the "error" policy (internal; becomes a DataError)."""

    def __init__(self, text: str) -> None:
        super().__init__(text)
        self.text = text


Fixed = Callable[[Any, int], Any]
Var = Callable[[bytes], Any]
# How to decode a column: (kind, column name, a, b), see the _K_* constants.
Compiled = tuple[int, str, Any, Any]
# The same plus its bit in the null bitmap, which depends on the columns-present bitmap.
Present = tuple[int, str, Any, Any, int]


# --------------------------------------------------------------------------- value decoders


def _mysql_latin1_table() -> str:
    """MySQL's latin1: cp1252, with the 5 bytes cp1252 leaves undefined mapped to U+0081.. ."""
    chars = []
    for b in range(256):
        try:
            chars.append(bytes([b]).decode("cp1252"))
        except UnicodeDecodeError:
            chars.append(chr(b))
    return "".join(chars)


_LATIN1_TABLE: Final = _mysql_latin1_table()
_charmap_decode = codecs.charmap_decode


def _decode_mysql_latin1(raw: bytes) -> str:
    return _charmap_decode(raw, "strict", _LATIN1_TABLE)[0]


# Library charset "encoding" names (Charset.encoding: utf8mb4/utf8mb3 -> 'utf8', latin1 ->
# 'cp1252', koi8r -> 'koi8_r', ...) and MySQL charset names -> Python codecs. MySQL's utf16
# and utf32 are big-endian without BOM, ucs2 is UTF-16BE restricted to the BMP.
_CODECS: Final[dict[str, str]] = {
    "utf8": "utf-8", "utf8mb4": "utf-8", "utf8mb3": "utf-8", "ascii": "ascii",
    "latin2": "iso8859-2", "latin5": "iso8859-9", "latin7": "iso8859-13",
    "greek": "iso8859-7", "hebrew": "iso8859-8", "ucs2": "utf-16-be", "utf16": "utf-16-be",
    "utf16le": "utf-16-le", "utf32": "utf-32-be", "macroman": "mac-roman",
    "macce": "mac-latin2", "sjis": "shift_jis", "ujis": "euc_jp", "eucjpms": "euc_jp",
    "euckr": "euc_kr", "tis620": "tis-620", "koi8r": "koi8_r", "koi8u": "koi8_u",
}
_LATIN1_NAMES: Final = frozenset({"cp1252", "latin1"})


def _text_codec(charset: str | None) -> str | None:
    """The Python codec for a column charset, ``None`` for MySQL latin1 (special table).

    Raises LookupError when Python has no codec for it.
    """
    if charset is None:  # no charset metadata (binlog_row_metadata=MINIMAL): the default
        return "utf-8"
    name = charset.lower()
    if name in _LATIN1_NAMES:
        return None
    codec = _CODECS.get(name, name)
    return codecs.lookup(codec).name


def _date_text(y: int, m: int, d: int) -> str:
    return f"{y:04d}-{m:02d}-{d:02d}"


def _make_date(bad_as_null: bool) -> Fixed:
    def dec(buf: Any, pos: int) -> date | None:
        v = buf[pos] | buf[pos + 1] << 8 | buf[pos + 2] << 16
        try:
            return date(v >> 9, (v >> 5) & 15, v & 31)
        except ValueError:
            if bad_as_null:
                return None
            raise _BadDate(_date_text(v >> 9, (v >> 5) & 15, v & 31)) from None

    return dec


def _frac_decoder(fsp: int) -> tuple[int, int]:
    """(bytes, multiplier to microseconds) of the fractional part of a *2 temporal type."""
    if not 0 <= fsp <= 6:
        raise ValueError(f"fractional seconds precision {fsp} is not in 0..6")
    nbytes = _FSP_BYTES[fsp]
    return nbytes, (0, 10000, 100, 1)[nbytes]


def _make_datetime2(fsp: int, bad_as_null: bool) -> tuple[Fixed, int]:
    """DATETIME2: 5 bytes big-endian ``1 sign | 17 year*13+month | 5 day | 5 hour | 6 minute
    | 6 second`` (offset 0x8000000000), then 0-3 bytes big-endian fraction."""
    fbytes, mult = _frac_decoder(fsp)
    width = 5 + fbytes
    fbits = 8 * fbytes
    fmask = (1 << fbits) - 1
    from_bytes = int.from_bytes
    u64 = _S_BQ.unpack_from if width == 8 else None  # DATETIME(5), (6): one unpack, no slice

    def dec(buf: Any, pos: int) -> datetime | None:
        v = u64(buf, pos)[0] if u64 is not None else from_bytes(buf[pos : pos + width], "big")
        us = (v & fmask) * mult
        v = (v >> fbits) - 0x8000000000
        ymd = v >> 17
        ym = ymd >> 5
        hms = v & 0x1FFFF
        try:
            return datetime(ym // 13, ym % 13, ymd & 31, hms >> 12, (hms >> 6) & 63, hms & 63, us)
        except ValueError:
            if bad_as_null:
                return None
            text = _date_text(ym // 13, ym % 13, ymd & 31)
            text += f" {hms >> 12:02d}:{(hms >> 6) & 63:02d}:{hms & 63:02d}"
            if fsp:
                text += f".{us:06d}"[: fsp + 1]
            raise _BadDate(text) from None

    return dec, width


def _make_timestamp2(fsp: int, bad_as_null: bool) -> tuple[Fixed, int]:
    """TIMESTAMP2: 4 bytes big-endian seconds since the epoch (UTC), then the fraction."""
    fbytes, mult = _frac_decoder(fsp)
    width = 4 + fbytes
    from_bytes = int.from_bytes
    fromtimestamp = datetime.fromtimestamp

    def dec(buf: Any, pos: int) -> datetime | None:
        sec = from_bytes(buf[pos : pos + 4], "big")
        us = from_bytes(buf[pos + 4 : pos + width], "big") * mult if fbytes else 0
        if sec == 0 and us == 0:  # the zero TIMESTAMP '0000-00-00 00:00:00'
            if bad_as_null:
                return None
            raise _BadDate("0000-00-00 00:00:00" + (("." + "0" * fsp) if fsp else ""))
        value = fromtimestamp(sec, _UTC)
        return value.replace(microsecond=us) if us else value

    return dec, width


def _make_time2(fsp: int) -> tuple[Fixed, int]:
    """TIME2: 3 bytes big-endian ``1 sign | 1 unused | 10 hour | 6 minute | 6 second`` plus
    the fraction, the whole stored as offset binary of a signed "packed time"
    (MySQL's my_time_packed_from_binary): for fsp 1-4 a negative value's fraction byte(s) are
    the complement, borrowing one second from the integer part."""
    fbytes, mult = _frac_decoder(fsp)
    width = 3 + fbytes
    from_bytes = int.from_bytes

    def dec(buf: Any, pos: int) -> timedelta:
        if fbytes == 3:
            packed = from_bytes(buf[pos : pos + 6], "big") - 0x800000000000
        else:
            intpart = from_bytes(buf[pos : pos + 3], "big") - 0x800000
            frac = 0
            if fbytes:
                frac = from_bytes(buf[pos + 3 : pos + width], "big")
                if intpart < 0 and frac:
                    intpart += 1
                    frac -= 0x100 if fbytes == 1 else 0x10000
            packed = (intpart << 24) + frac * mult
        neg = packed < 0
        if neg:
            packed = -packed
        hms = packed >> 24
        td = timedelta(
            hours=(hms >> 12) & 0x3FF,
            minutes=(hms >> 6) & 63,
            seconds=hms & 63,
            microseconds=packed & 0xFFFFFF,
        )
        return -td if neg else td

    return dec, width


def _dec_time_old(buf: Any, pos: int) -> timedelta:
    """Classic TIME (fsp 0): 3 bytes little-endian signed ``±(h*10000 + m*100 + s)``."""
    v = int.from_bytes(buf[pos : pos + 3], "little", signed=True)
    neg = v < 0
    if neg:
        v = -v
    td = timedelta(hours=v // 10000, minutes=v // 100 % 100, seconds=v % 100)
    return -td if neg else td


def _make_datetime_old(bad_as_null: bool) -> Fixed:
    """Classic DATETIME (fsp 0): 8 bytes little-endian ``YYYYMMDDhhmmss`` as a decimal number."""

    def dec(buf: Any, pos: int) -> datetime | None:
        v = _S_UQ.unpack_from(buf, pos)[0]
        d, t = divmod(v, 1000000)
        y, md = divmod(d, 10000)
        m, dd = divmod(md, 100)
        hh, ms = divmod(t, 10000)
        mi, ss = divmod(ms, 100)
        try:
            return datetime(y, m, dd, hh, mi, ss)
        except ValueError:
            if bad_as_null:
                return None
            raise _BadDate(_date_text(y, m, dd) + f" {hh:02d}:{mi:02d}:{ss:02d}") from None

    return dec


def _make_timestamp_old(bad_as_null: bool) -> Fixed:
    """Classic TIMESTAMP (fsp 0): 4 bytes little-endian seconds since the epoch."""
    fromtimestamp = datetime.fromtimestamp

    def dec(buf: Any, pos: int) -> datetime | None:
        sec = _S_UI.unpack_from(buf, pos)[0]
        if sec == 0:
            if bad_as_null:
                return None
            raise _BadDate("0000-00-00 00:00:00")
        return fromtimestamp(sec, _UTC)

    return dec


def _dec_year(buf: Any, pos: int) -> int:
    v: int = buf[pos]
    return v + 1900 if v else 0


def _make_int_le(width: int, signed: bool) -> Fixed:
    from_bytes = int.from_bytes

    def dec(buf: Any, pos: int) -> int:
        return from_bytes(buf[pos : pos + width], "little", signed=signed)

    return dec


def _make_bit(width: int) -> Fixed:
    from_bytes = int.from_bytes

    def dec(buf: Any, pos: int) -> int:
        return from_bytes(buf[pos : pos + width], "big")

    return dec


_EXACT: Final = Context(prec=100, Emax=MAX_EMAX, Emin=MIN_EMIN)  # wider than DECIMAL(65): never rounds


def _make_decimal(precision: int, scale: int) -> tuple[Fixed, int]:
    """NEWDECIMAL: big-endian groups of 9 digits in 4 bytes, a leading (integer part) and a
    trailing (fraction) group of fewer digits in 1-4 bytes; the top bit of the first byte
    is set for non-negative numbers, and a negative number has all its bytes inverted.

    The groups are read by one ``struct`` unpack (a 3-byte group as a byte and a 16-bit
    half), their sign fixed by XOR, and combined into the unscaled value by an expression
    written for this precision and scale, then scaled exactly: the unscaled integer times
    ``1E-scale`` in a context wider than any DECIMAL (no rounding), which is twice as fast as
    parsing its text and gives the same Decimal (digits and exponent). A negative zero (all
    digits zero, sign negative) keeps its sign, as the text did. (Slicing the bytes for one
    ``int.from_bytes`` and shifting each group out of it cost half as much again.)
    """
    if not 0 <= scale <= precision or precision > 65 or precision == 0:
        raise ValueError(f"DECIMAL({precision},{scale}) is not a valid decimal")
    intg = precision - scale
    groups: list[int] = []  # digits per group, most significant first
    if intg % 9:
        groups.append(intg % 9)
    groups += [9] * (intg // 9)
    groups += [9] * (scale // 9)
    if scale % 9:
        groups.append(scale % 9)
    sizes = [4 if g == 9 else _DIG2BYTES[g] for g in groups]
    width = sum(sizes)
    fmt = ">"
    fields: list[str] = []  # struct fields
    parts: list[tuple[str, int]] = []  # per group: expression of its raw value, its size
    for size in sizes:
        if size == 3:
            hi, lo = f"f{len(fields)}", f"f{len(fields) + 1}"
            fields += [hi, lo]
            fmt += "BH"
            parts.append((f"({hi} << 16 | {lo})", size))
        else:
            fields.append(f"f{len(fields)}")
            fmt += {1: "B", 2: "H", 4: "I"}[size]
            parts.append((fields[-1], size))

    def combine(negative: bool) -> str:
        expr = ""
        for j, ((raw, size), g) in enumerate(zip(parts, groups)):
            mask = (1 << (size * 8)) - 1
            sign = 1 << (size * 8 - 1) if j == 0 else 0
            flip = (mask ^ sign) if negative else sign
            part = f"({raw} ^ {flip})" if flip else raw
            expr = part if not expr else f"({expr}) * {10**g} + {part}"
        return expr

    top = fields[0]
    sign_bit = 0x80 if sizes[0] == 3 else 1 << (sizes[0] * 8 - 1)
    ns: dict[str, Any] = {
        "unpack": struct.Struct(fmt).unpack_from,
        "D": Decimal,
        "mul": _EXACT.multiply,
        "SCALE": Decimal(f"1E-{scale}"),
        "NEG_ZERO": Decimal(f"-0E-{scale}"),
    }
    scaled = "mul(D({}), SCALE)" if scale else "D({})"
    source = "\n".join([
        "def dec(buf, pos):",
        f"    {', '.join(fields)}, = unpack(buf, pos)",
        f"    if {top} & {sign_bit}:",
        f"        return {scaled.format(combine(False))}",
        f"    unscaled = {combine(True)}",
        f"    return {scaled.format('-unscaled')} if unscaled else NEG_ZERO",
    ])
    exec(compile(source, f"<DECIMAL({precision},{scale}) decoder>", "exec"), ns)
    dec: Fixed = ns["dec"]
    return dec, width


_LOST = "member name lost"


def _member_names(values: Sequence[str], charset: str | None, first_is_error_value: bool) -> (
    tuple[str | None, ...]
):
    """ENUM/SET member names as the column's charset spells them; ``None`` where unknown.

    The library decodes the names in the table map as UTF-8 whatever the column's charset, and
    replaces a name that is not valid UTF-8 with ``''`` (a latin1 ``'é'`` becomes ``''``). For
    a column whose charset is not UTF-8 the successfully decoded names are turned back into
    their bytes and decoded with the real charset (a latin1 ``'Ã©'`` arrives as ``'é'``); an
    ``''`` there may be a lost name, so it becomes ``None`` and decoding that member raises.
    """
    name = (charset or "utf8").lower()
    if name in ("utf8", "utf8mb4", "utf8mb3", "binary"):
        return tuple(values)
    codec = _text_codec(name)
    out: list[str | None] = []
    for i, value in enumerate(values):
        if i == 0 and first_is_error_value:
            out.append(value)
        elif not value:
            out.append(None)
        else:
            raw = value.encode("utf-8")
            out.append(_decode_mysql_latin1(raw) if codec is None else raw.decode(codec))
    return tuple(out)


def _make_enum(values: Sequence[str | None], width: int) -> Fixed:
    """ENUM: the 1-based index of the value (0 = the '' error value), 1 or 2 bytes LE.

    ``values`` follows the library's list, which has ``''`` prepended at index 0.
    """
    table = tuple(values)

    def dec(buf: Any, pos: int) -> str:
        value: str | None = table[buf[pos]]
        if value is None:
            raise ValueError(f"{_LOST}: ENUM index {buf[pos]}")
        return value

    def dec2(buf: Any, pos: int) -> str:
        index = buf[pos] | buf[pos + 1] << 8
        value: str | None = table[index]
        if value is None:
            raise ValueError(f"{_LOST}: ENUM index {index}")
        return value

    return dec if width == 1 else dec2


def _make_set(members: Sequence[str | None], width: int) -> Fixed:
    names = tuple(members)
    allowed = (1 << len(names)) - 1
    from_bytes = int.from_bytes
    cache: dict[int, str] = {}

    def dec(buf: Any, pos: int) -> str:
        mask = from_bytes(buf[pos : pos + width], "little")
        hit = cache.get(mask)
        if hit is not None:
            return hit
        if mask & ~allowed:
            raise ValueError(f"SET bitmask {mask:#x} names members beyond the {len(names)} defined")
        chosen = [n for i, n in enumerate(names) if mask >> i & 1]
        if None in chosen:
            raise ValueError(f"{_LOST}: SET bitmask {mask:#x}")
        text = ",".join([n for n in chosen if n is not None])
        if len(cache) < 4096:
            cache[mask] = text
        return text

    return dec


def _json_plain(value: Any) -> Any:
    """The library's parse_json result with bytes keys/strings turned into str."""
    if isinstance(value, dict):
        return {
            (k.decode() if isinstance(k, bytes | bytearray) else k): _json_plain(v)
            for k, v in value.items()
        }
    if isinstance(value, list):
        return [_json_plain(v) for v in value]
    if isinstance(value, bytes | bytearray):
        return value.decode()
    return value


def _dec_mysql_json(raw: bytes) -> Any:
    if not raw:  # MySQL writes an empty value for a JSON column that holds no document
        return None
    from pymysqlreplication.json_binary import parse_json

    return _json_plain(parse_json(raw[0], raw[1:]))


def _make_binary_char(length: int) -> Var:
    def dec(raw: bytes) -> bytes:
        value = bytes(raw)
        return value if len(value) >= length else value.ljust(length, b"\x00")

    return dec


# --------------------------------------------------------------------------- compilation


def _attr(column: Any, name: str, default: Any = None) -> Any:
    return getattr(column, name, default)


def _compile(column: Any, index: int, bad_as_null: bool) -> Compiled:
    """How to decode one column: ``(kind, name, a, b)`` (see the _K_* constants)."""
    t = column.type
    name = column.name
    unsigned = bool(_attr(column, "unsigned", False))
    if t == T_TINY:
        return (_K_UNPACK, name, (_S_UB if unsigned else _S_B).unpack_from, 1)
    if t == T_SHORT:
        return (_K_UNPACK, name, (_S_UH if unsigned else _S_H).unpack_from, 2)
    if t == T_LONG:
        return (_K_UNPACK, name, (_S_UI if unsigned else _S_I).unpack_from, 4)
    if t == T_LONGLONG:
        return (_K_UNPACK, name, (_S_UQ if unsigned else _S_Q).unpack_from, 8)
    if t == T_INT24:
        return (_K_FIXED, name, _make_int_le(3, not unsigned), 3)
    if t == T_FLOAT:
        return (_K_UNPACK, name, _S_F.unpack_from, 4)
    if t == T_DOUBLE:
        return (_K_UNPACK, name, _S_D.unpack_from, 8)
    if t == T_NEWDECIMAL:
        fn, width = _make_decimal(int(column.precision), int(column.decimals))
        return (_K_FIXED, name, fn, width)
    if t in (T_DATE, T_NEWDATE):
        return (_K_FIXED, name, _make_date(bad_as_null), 3)
    if t == T_DATETIME2:
        fn, width = _make_datetime2(int(_attr(column, "fsp", 0) or 0), bad_as_null)
        return (_K_FIXED, name, fn, width)
    if t == T_TIMESTAMP2:
        fn, width = _make_timestamp2(int(_attr(column, "fsp", 0) or 0), bad_as_null)
        return (_K_FIXED, name, fn, width)
    if t == T_TIME2:
        fn, width = _make_time2(int(_attr(column, "fsp", 0) or 0))
        return (_K_FIXED, name, fn, width)
    if t == T_TIME:
        return (_K_FIXED, name, _dec_time_old, 3)
    if t == T_DATETIME:
        return (_K_FIXED, name, _make_datetime_old(bad_as_null), 8)
    if t == T_TIMESTAMP:
        return (_K_FIXED, name, _make_timestamp_old(bad_as_null), 4)
    if t == T_YEAR:
        return (_K_FIXED, name, _dec_year, 1)
    if t == T_BIT:
        width = int(_attr(column, "bytes", 0) or (int(column.bits) + 7) // 8)
        return (_K_FIXED, name, _make_bit(width), width)
    if t == T_ENUM:
        values = _attr(column, "enum_values")
        if not values:
            raise _no_metadata(column, "ENUM values")
        width = int(column.size)
        names = _member_names(values, _attr(column, "character_set_name"), True)
        return (_K_FIXED, name, _make_enum(names, width), width)
    if t == T_SET:
        members = _attr(column, "set_values")
        if members is None:
            raise _no_metadata(column, "SET members")
        width = int(column.size)
        names = _member_names(members, _attr(column, "character_set_name"), False)
        return (_K_FIXED, name, _make_set(names, width), width)
    if t in (T_VARCHAR, T_VAR_STRING, T_STRING, T_BLOB):
        if t == T_BLOB:
            prefix = int(column.length_size)
        else:
            prefix = 2 if int(column.max_length) > 255 else 1
        charset = _attr(column, "character_set_name")
        if charset is not None and charset.lower() == "binary":
            if t == T_STRING:  # BINARY(n): put back the trailing zero bytes the binlog strips
                return (_K_VAR, name, prefix, _make_binary_char(int(column.max_length)))
            return (_K_BYTES, name, prefix, None)
        try:
            codec = _text_codec(charset)
        except LookupError:
            raise DataError(
                f"column {name!r} uses character set {charset!r}, which Python cannot decode"
            ) from None
        if codec is None:
            return (_K_VAR, name, prefix, _decode_mysql_latin1)
        return (_K_TEXT, name, prefix, codec)
    if t == T_JSON:
        return (_K_VAR, name, int(column.length_size), _dec_mysql_json)
    if t == T_GEOMETRY:
        return (_K_BYTES, name, int(column.length_size), None)
    raise DataError(
        f"column {name!r} (position {index + 1}) has binlog type {t}, which the row decoder"
        " does not support"
    )


def _no_metadata(column: Any, what: str) -> CheckFailed:
    return CheckFailed(
        f"the table map of column {column.name!r} carries no {what}: set"
        " binlog_row_metadata=FULL on the source server"
    )


# --------------------------------------------------------------------------- the row loop


RowReader = Callable[[bytes, int], tuple[Row, int]]


def _row_reader(cols: Sequence[Present], nbytes: int) -> RowReader:
    """A function reading one row image at ``pos``: the null bitmap, then the values of the
    present, non-NULL columns; it returns ``(row, position after the row)``.

    One straight-line function written for this table map and columns-present bitmap (as
    ``dataclasses`` and ``collections.namedtuple`` do). Events are read by
    :func:`_event_reader`; this reads them again image by image when that fails, to find the
    row that does not decode. Column names go into the source only as ``repr`` literals, the
    decoders as names in its namespace.
    """
    ns: dict[str, Any] = {"from_bytes": int.from_bytes}
    lines = ["def read_row(buf, pos):"]
    if nbytes == 1:
        lines.append("    nulls = buf[pos]")
    elif nbytes:
        lines.append(f"    nulls = from_bytes(buf[pos : pos + {nbytes}], 'little')")
    else:
        lines.append("    nulls = 0")
    lines += [f"    pos += {nbytes}", "    row = {}"]
    for i, (kind, name, a, b, bit) in enumerate(cols):
        key = repr(name)
        lines += [f"    if nulls & {bit}:", f"        row[{key}] = None", "    else:"]
        if kind == _K_UNPACK:
            ns[f"a{i}"] = a
            lines += [f"        row[{key}] = a{i}(buf, pos)[0]", f"        pos += {int(b)}"]
        elif kind == _K_FIXED:
            ns[f"a{i}"] = a
            lines += [f"        row[{key}] = a{i}(buf, pos)", f"        pos += {int(b)}"]
        else:
            if a == 1:
                lines += ["        end = pos + 1 + buf[pos]", "        pos += 1"]
            else:
                lines += [
                    f"        end = pos + {int(a)} + from_bytes(buf[pos : pos + {int(a)}], 'little')",
                    f"        pos += {int(a)}",
                ]
            if kind == _K_TEXT:
                lines.append(f"        row[{key}] = buf[pos:end].decode({str(b)!r})")
            elif kind == _K_BYTES:
                lines.append(f"        row[{key}] = buf[pos:end]")
            else:
                ns[f"b{i}"] = b
                lines.append(f"        row[{key}] = b{i}(buf[pos:end])")
            lines.append("        pos = end")
    lines.append("    return row, pos")
    exec(compile("\n".join(lines), "<binlog row reader>", "exec"), ns)
    reader: RowReader = ns["read_row"]
    return reader


EventReader = Callable[[bytes, int, int], list[Any]]
# What the caller wants per row instead of the (before, after) pair: record(key, before, after)
# with key the row's key columns (of the before image for updates and deletes).
Record = Callable[[Row, "Row | None", "Row | None"], Any]


class _Misfit(Exception):
    """The rows of an event do not end where the event ends (internal; becomes a DataError)."""

    def __init__(self, pos: int) -> None:
        super().__init__(pos)
        self.pos = pos


class _Code:
    """Source lines of a generated reader and the objects its names stand for."""

    def __init__(self) -> None:
        self.lines: list[str] = []
        self.ns: dict[str, Any] = {"from_bytes": int.from_bytes, "uh": _S_UH.unpack_from, "ui": _S_UI.unpack_from}

    @staticmethod
    def uint(n: int, at: str) -> str:
        """The expression reading an n-byte little-endian unsigned integer at ``at`` (a
        struct unpack costs less than slicing for ``from_bytes``)."""
        if n == 1:
            return f"buf[{at}]"
        if n == 2:
            return f"uh(buf, {at})[0]"
        if n == 4:
            return f"ui(buf, {at})[0]"
        return f"from_bytes(buf[{at} : {at} + {n}], 'little')"

    def bind(self, obj: Any) -> str:
        name = f"_o{len(self.ns)}"
        self.ns[name] = obj
        return name

    def nulls(self, var: str, nbytes: int, ind: str) -> None:
        if nbytes:
            self.lines += [f"{ind}{var} = {self.uint(nbytes, 'pos')}", f"{ind}pos += {nbytes}"]
        else:
            self.lines.append(f"{ind}{var} = 0")

    def walk(self, kind: int, a: Any, b: Any, ind: str) -> None:
        """Advance ``pos`` over one value."""
        if kind in (_K_UNPACK, _K_FIXED):
            self.lines.append(f"{ind}pos += {int(b)}")
        else:
            self.lines.append(f"{ind}pos += {int(a)} + {self.uint(int(a), 'pos')}")

    def value(self, kind: int, a: Any, b: Any, start: str, end: str) -> str:
        """The expression decoding a value whose bytes (length prefix included) run from local
        ``start`` to local ``end``."""
        if kind == _K_UNPACK:
            return f"{self.bind(a)}(buf, {start})[0]"
        if kind == _K_FIXED:
            return f"{self.bind(a)}(buf, {start})"
        if kind == _K_TEXT:
            return f"buf[{start} + {int(a)}:{end}].decode({str(b)!r})"
        if kind == _K_BYTES:
            return f"buf[{start} + {int(a)}:{end}]"
        return f"{self.bind(b)}(buf[{start} + {int(a)}:{end}])"

    def image(self, cols: Sequence[Present], nbytes: int, row: str, ind: str, spans: str = "") -> None:
        """Decode the row image at ``pos`` into the dict ``row``; with ``spans`` ('tu'), keep
        each value's bytes as locals t<i>:u<i> (t<i> = -1 for NULL)."""
        self.nulls("nulls", nbytes, ind)
        for i, (kind, _name, a, b, bit) in enumerate(cols):
            self.lines += [f"{ind}if nulls & {bit}:", f"{ind}    v{i} = None"]
            if spans:
                t, u = f"{spans[0]}{i}", f"{spans[1]}{i}"
                self.lines += [f"{ind}    {t} = -1", f"{ind}else:", f"{ind}    {t} = pos"]
                self.walk(kind, a, b, ind + "    ")
                self.lines += [f"{ind}    {u} = pos", f"{ind}    v{i} = {self.value(kind, a, b, t, u)}"]
            elif kind in (_K_UNPACK, _K_FIXED):
                self.lines += [f"{ind}else:", f"{ind}    v{i} = {self.value(kind, a, b, 'pos', '')}",
                               f"{ind}    pos += {int(b)}"]
            else:
                self.lines += [f"{ind}else:", f"{ind}    q = pos + {int(a)} + {self.uint(int(a), 'pos')}"]
                self.lines += [f"{ind}    v{i} = {self.value(kind, a, b, 'pos', 'q')}", f"{ind}    pos = q"]
        self.lines.append(f"{ind}{row} = {{" + ", ".join(f"{c[1]!r}: v{i}" for i, c in enumerate(cols)) + "}")

    def walk_image(self, cols: Sequence[Present], nbytes: int, ind: str) -> None:
        """Walk the row image at ``pos``, keeping each value's bytes as locals s<i>:e<i>."""
        self.nulls("nulls", nbytes, ind)
        for i, (kind, _name, a, b, bit) in enumerate(cols):
            self.lines += [f"{ind}if nulls & {bit}:", f"{ind}    s{i} = -1", f"{ind}else:", f"{ind}    s{i} = pos"]
            self.walk(kind, a, b, ind + "    ")
            self.lines.append(f"{ind}    e{i} = pos")


def _event_reader(
    kind: str,
    cols1: Sequence[Present],
    nb1: int,
    cols2: Sequence[Present],
    nb2: int,
    key: Sequence[str],
    record: Record | None,
) -> EventReader:
    """A function reading all rows of one rows event, a row being ``record(key, before,
    after)`` or, without ``record``, the pair ``(before, after)``; it raises :class:`_Misfit`
    when the rows do not end where the event ends.

    It is one function written for this table map, event kind and columns-present bitmap(s)
    (as ``dataclasses`` and ``collections.namedtuple`` do): a loop over the rows with the
    columns' code straight-line inside (no call per row, no loop over columns, no dispatch on
    the column kind), constants and decoders bound once, each row built by one dict display.
    Column names go into the source only as ``repr`` literals, the decoders as names in its
    namespace. Building the caller's records in the same loop saves another pass per row.

    An UPDATE usually changes few columns, and a column whose bytes are the same in both
    images has the same value. So when both images have the same columns, the before image
    is only walked (its columns' positions noted, nothing decoded), the after image is decoded
    in full, and the before row is a copy of the after row in which only the columns whose
    bytes differ are decoded: for a typical single-column update that halves the decoding.

    The values are those :func:`_row_reader` gives image by image; when anything fails, the
    caller reads the event again that way, which raises the detailed error.
    """
    code = _Code()
    code.lines += ["def read_event(buf, pos, end):", "    out = []", "    append = out.append", "    while pos < end:"]
    ind = "        "
    if kind == "update" and cols1 is cols2:
        code.walk_image(cols1, nb1, ind)
        code.image(cols2, nb2, "row", ind, spans="tu")
        code.lines.append(f"{ind}before = row.copy()")
        for i, (k, name, a, b, _bit) in enumerate(cols1):
            code.lines += [
                f"{ind}if s{i} < 0:",
                f"{ind}    if t{i} >= 0:",
                f"{ind}        before[{name!r}] = None",
                f"{ind}elif t{i} < 0 or buf[s{i}:e{i}] != buf[t{i}:u{i}]:",
                f"{ind}    before[{name!r}] = {code.value(k, a, b, f's{i}', f'e{i}')}",
            ]
        old, new = "before", "row"
    elif kind == "update":
        code.image(cols1, nb1, "before", ind)
        code.image(cols2, nb2, "row", ind)
        old, new = "before", "row"
    elif kind == "write":
        code.image(cols1, nb1, "row", ind)
        old, new = "None", "row"
    else:
        code.image(cols1, nb1, "row", ind)
        old, new = "row", "None"
    if record is None:
        code.lines.append(f"{ind}append(({old}, {new}))")
    else:
        src = new if kind == "write" else old
        key_code = "{" + ", ".join(f"{k!r}: {src}[{k!r}]" for k in key) + "}"
        if isinstance(record, partial) and not record.keywords:  # call its function directly
            fn, head = code.bind(record.func), [code.bind(a) for a in record.args]
        else:
            fn, head = code.bind(record), []
        code.lines.append(f"{ind}append({fn}({', '.join([*head, key_code, old, new])}))")
    code.lines += ["    if pos != end:", f"        raise {code.bind(_Misfit)}(pos)", "    return out"]
    exec(compile("\n".join(code.lines), f"<binlog {kind} event reader>", "exec"), code.ns)
    reader: EventReader = code.ns["read_event"]
    return reader


# --------------------------------------------------------------------------- rows as text

# The value kinds of the passthrough readers, per binlog type (text columns, kind _K_TEXT, are
# "s"; VARBINARY/BLOB/GEOMETRY, kind _K_BYTES, "b"): i integer (YEAR and BIT too), f FLOAT/DOUBLE,
# n DECIMAL, d DATE or DATETIME (naive), z TIMESTAMP (aware, UTC), e ENUM/SET (str).
_RAW_KINDS: Final = {T_TINY: "i", T_SHORT: "i", T_LONG: "i", T_LONGLONG: "i", T_INT24: "i", T_YEAR: "i", T_BIT: "i",
                     T_FLOAT: "f", T_DOUBLE: "f", T_NEWDECIMAL: "n", T_DATE: "d", T_NEWDATE: "d", T_DATETIME2: "d",
                     T_TIMESTAMP2: "z", T_ENUM: "e", T_SET: "e"}
RawReader = Callable[[bytes, int, int], tuple[list[Any], list[list[str]]]]


class NotRaw(Exception):
    """A rows event that the text reader does not take (a key changed, text holds a NUL for
    PostgreSQL, a value does not decode): read it as change records instead, which reports
    any error."""


def copy_text(value: str) -> str:
    """A text value as a field of PostgreSQL's COPY text format."""
    if "\x00" in value:  # PostgreSQL text cannot hold it: the normal path reports it
        raise NotRaw
    return value.replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n").replace("\r", "\\r")


@dataclass(frozen=True)
class RawFormat:
    """How the passthrough reader writes a row as one text: per value kind (see _RAW_KINDS)
    the expression of a non-NULL value ``V`` (names from ``ns``, which start with ``_`` to keep
    clear of the generated code's locals), NULL's text, the separator and what goes around
    the row."""

    name: str
    exprs: dict[str, str]
    null: str
    sep: str
    wrap: tuple[str, str]
    ns: dict[str, Any]


COPY_TEXT: Final = RawFormat(
    # what psycopg writes for these Python values in COPY's text format (its dumpers use str(),
    # which is repr() for floats; bytes in bytea's hex format, which it uses on a connection)
    "copy", {"i": "V", "f": "V", "n": "V", "d": "V", "z": "V", "s": "(_esc(V) if _special(V) else V)",
             "e": "(_esc(V) if _special(V) else V)", "b": "_bytea(V)"},
    "\\N", "\t", ("", ""),
    {"_esc": copy_text, "_special": re.compile("[\\\\\t\n\r\x00]").search,
     "_bytea": lambda v: "\\\\x" + v.hex()},  # bytea's hex input, its backslash escaped for COPY
)
MYSQL_VALUES: Final = RawFormat(
    # what replicator.mysql.writer renders for a multi-row INSERT (backslash escapes on):
    # fixed-point decimals, quoted dates, strings escaped as pymysql's escape_string does.
    # Not taken: floats (the writer's FLOAT handling), TIMESTAMP (it writes UTC wall time),
    # ENUM/SET (the ENUM error value '' needs the writer's lax-mode path), binary strings.
    "mysql", {"i": "V", "n": "_fixed(V)", "d": "_quote(V)", "s": "_quote(_esc(V) if _special(V) else V)"},
    "NULL", ",", ("(", ")"),
    {"_esc": escape_string, "_special": re.compile("[\\\\\x00\n\r\x1a'\"]").search,
     "_fixed": "{:f}".format, "_quote": "'{}'".format},
)


def _raw_event_reader(
    kind: str, cols: Sequence[Present], nbytes: int, key_idx: Sequence[int], kinds: str, fmt: RawFormat
) -> RawReader:
    """A function reading all rows of one rows event as ``(keys, rows)`` for a passthrough
    (:mod:`replicator.mysql.passthrough`): ``keys[i]`` is row i's key (the values of the
    columns ``key_idx``, a tuple for several), ``rows[i]`` a one-element list holding the row's
    whole text in format ``fmt`` (a COPY line, or a ``(…)`` of SQL literals); none for deletes.
    Every column is present in the images (``cols``; ``kinds`` their value kinds).

    Generated like :func:`_event_reader`, with the same value decoding; each row becomes one
    f-string instead of a dict and a change record. An update whose key bytes differ between
    the images, or anything unusual, raises :class:`NotRaw`.
    """
    code = _Code()
    code.ns.update(fmt.ns, NULL=fmt.null, NotRaw=NotRaw)
    code.lines += ["def read_raw(buf, pos, end):", "    keys = []", "    rows = []", "    while pos < end:"]
    ind = "        "
    if kind == "delete":
        code.walk_image(cols, nbytes, ind)
        for k in key_idx:
            ck, _name, a, b, _bit = cols[k]
            code.lines += [f"{ind}if s{k} < 0:", f"{ind}    raise NotRaw",
                           f"{ind}v{k} = {code.value(ck, a, b, f's{k}', f'e{k}')}"]
    else:
        if kind == "update":
            code.walk_image(cols, nbytes, ind)
            code.image(cols, nbytes, "row", ind, spans="tu")
            code.lines.pop()  # the dict display: the row becomes its text instead
            for k in key_idx:
                code.lines += [f"{ind}if s{k} < 0 or t{k} < 0 or buf[s{k}:e{k}] != buf[t{k}:u{k}]:",
                               f"{ind}    raise NotRaw"]
        else:
            code.image(cols, nbytes, "row", ind)
            code.lines.pop()
        fields = [
            "{(NULL if v%d is None else %s)}" % (i, fmt.exprs[kinds[i]].replace("V", f"v{i}"))
            for i in range(len(kinds))
        ]
        text = fmt.wrap[0] + fmt.sep.join(fields).replace("\t", "\\t") + fmt.wrap[1]
        code.lines.append(f'{ind}rows.append([f"{text}"])')
    key = f"v{key_idx[0]}" if len(key_idx) == 1 else "(" + "".join(f"v{k}, " for k in key_idx) + ")"
    code.lines.append(f"{ind}keys.append({key})")
    code.lines += ["    if pos != end:", f"        raise {code.bind(_Misfit)}(pos)", "    return keys, rows"]
    exec(compile("\n".join(code.lines), f"<binlog {kind} {fmt.name} reader>", "exec"), code.ns)
    reader: RawReader = code.ns["read_raw"]
    return reader


def _read_value(buf: Any, pos: int, kind: int, a: Any, b: Any) -> tuple[Any, int]:
    """One value (slow path, for diagnostics only)."""
    if kind == _K_UNPACK:
        return a(buf, pos)[0], pos + b
    if kind == _K_FIXED:
        if pos + b > len(buf):
            raise ValueError("value runs past the end of the event")
        return a(buf, pos), pos + b
    n = int.from_bytes(buf[pos : pos + a], "little")
    pos += a
    end = pos + n
    if end > len(buf):
        raise ValueError("value runs past the end of the event")
    raw = buf[pos:end]
    if kind == _K_TEXT:
        return str(raw, b), end
    if kind == _K_BYTES:
        return bytes(raw), end
    return b(raw), end


class RowDecoder:
    """Decodes the rows events of one table map into ``(before, after)`` dicts
    (:meth:`decode`), or into the caller's records (:meth:`read_event`).

    ``table`` is the library's ``pymysqlreplication.table.Table`` (``schema``, ``table``,
    ``columns``). ``zero_date`` is the policy for zero and invalid dates: ``"error"`` raises
    :class:`DataError`, ``"null"`` yields ``None``. ``key_columns`` names the columns that
    identify a row in error messages; by default the columns the table map flags as primary
    key.
    """

    def __init__(
        self,
        table: Any,
        *,
        zero_date: str = "error",
        key_columns: Sequence[str] | None = None,
    ) -> None:
        if zero_date not in ("error", "null"):
            raise ValueError(f"zero_date must be 'error' or 'null', not {zero_date!r}")
        self.schema: str = table.schema
        self.table: str = table.table
        self.zero_date = zero_date
        columns = list(table.columns)
        for i, col in enumerate(columns):
            if not col.name:
                raise CheckFailed(
                    f"the table map of `{self.schema}`.`{self.table}` carries no name for"
                    f" column {i + 1}: set binlog_row_metadata=FULL on the source server"
                )
        self.column_names: tuple[str, ...] = tuple(c.name for c in columns)
        if key_columns is None:
            key_columns = [c.name for c in columns if _attr(c, "is_primary", False)]
        self.key_columns: tuple[str, ...] = tuple(key_columns)
        self._type_names = tuple(_TYPE_NAMES.get(c.type, str(c.type)) for c in columns)
        bad_as_null = zero_date == "null"
        compiled: list[Compiled] = []
        for i, col in enumerate(columns):
            try:
                compiled.append(_compile(col, i, bad_as_null))
            except (ValueError, TypeError, AttributeError) as exc:
                raise DataError(
                    f"cannot decode column {col.name!r} of `{self.schema}`.`{self.table}`:"
                    f" {exc}"
                ) from None
            except DataError as exc:
                raise DataError(f"`{self.schema}`.`{self.table}`: {exc}") from None
        self._compiled: tuple[Compiled, ...] = tuple(compiled)
        self._columns = columns
        # every column present: the columns-present bitmap of a FULL row image
        self._all_present = ((1 << len(columns)) - 1).to_bytes((len(columns) + 7) >> 3, "little")
        self._raw_readers: dict[tuple[str, bytes, str], RawReader] = {}
        # columns-present bitmap -> (present columns with their null bit, null-bitmap bytes,
        # the row reader for them)
        self._present: dict[bytes, tuple[tuple[Present, ...], int, RowReader]] = {}
        # (event kind, columns-present bitmap(s)) -> (the record function, the event reader)
        self._readers: dict[str, dict[bytes, tuple[Record | None, EventReader]]] = {
            "write": {}, "update": {}, "delete": {},
        }

    def __repr__(self) -> str:
        return f"RowDecoder(`{self.schema}`.`{self.table}`, zero_date={self.zero_date!r})"

    def _columns_for(self, bitmap: bytes) -> tuple[tuple[Present, ...], int, RowReader]:
        hit = self._present.get(bitmap)
        if hit is not None:
            return hit
        bits = int.from_bytes(bitmap, "little")
        present: list[Present] = []
        j = 0
        for i, (kind, name, a, b) in enumerate(self._compiled):
            if bits >> i & 1:
                present.append((kind, name, a, b, 1 << j))
                j += 1
        nbytes = (j + 7) // 8
        result = (tuple(present), nbytes, _row_reader(present, nbytes))
        if len(self._present) < 64:
            self._present[bitmap] = result
        return result

    def decode(
        self, kind: str, body: bytes | bytearray | memoryview, number_of_columns: int
    ) -> list[tuple[dict[str, Any] | None, dict[str, Any] | None]]:
        """The rows of one rows event as ``(before, after)`` pairs.

        ``kind`` is ``'write'``, ``'update'`` or ``'delete'``; ``body`` starts at the
        columns-present bitmap (two bitmaps for an update) and ends before the checksum.
        """
        buf = body if isinstance(body, bytes) else bytes(body)
        rows: list[RowPair] = self.read_event(kind, buf, 0, len(buf), number_of_columns)
        return rows

    def read_event(
        self, kind: str, buf: bytes, start: int, end: int, number_of_columns: int, record: Record | None = None
    ) -> list[Any]:
        """The rows of the rows event whose body is ``buf[start:end]`` (as for :meth:`decode`;
        the reader passes the packet itself, saving a copy of the body per event): per row
        ``record(key, before, after)``, or the pair ``(before, after)`` without ``record``.
        ``key`` holds the key columns, of the before image for updates and deletes. Pass the
        same ``record`` object for every event: the reader built for it is kept."""
        if number_of_columns != len(self._compiled):
            raise DataError(
                f"a rows event for `{self.schema}`.`{self.table}` has {number_of_columns}"
                f" columns but its table map has {len(self._compiled)}"
            )
        bm = (number_of_columns + 7) >> 3
        pos = start + (2 * bm if kind == "update" else bm)
        readers = self._readers.get(kind)
        hit = readers.get(buf[start:pos]) if readers is not None else None
        if hit is not None and hit[0] is record:
            reader = hit[1]
        else:
            reader = self._reader(kind, buf, start, bm, record)
        try:
            out: list[Any] = reader(buf, pos, end)
        except _Misfit as misfit:
            raise DataError(
                f"a rows event for `{self.schema}`.`{self.table}` does not fit its table map:"
                f" its rows end at byte {misfit.pos - start} of {end - start}"
            ) from None
        except Exception:
            self._read_slowly(kind, buf, start, end, bm)  # raises the details of a bad row
            raise  # the rows decode: the record function failed
        return out

    def raw_kinds(self, fmt: RawFormat) -> str | None:
        """For a passthrough: every column's value kind (see ``_RAW_KINDS``) if :meth:`read_raw`
        can write each column's values in format ``fmt``, else None."""
        kinds = "".join(
            "s" if kind == _K_TEXT else "b" if kind == _K_BYTES else _RAW_KINDS.get(col.type, "?")
            for col, (kind, _name, _a, _b) in zip(self._columns, self._compiled)
        )
        return kinds if all(k in fmt.exprs for k in kinds) else None

    def read_raw(
        self, kind: str, buf: bytes, start: int, end: int, number_of_columns: int, key_idx: tuple[int, ...],
        fmt: RawFormat,
    ) -> tuple[list[Any], list[list[str]]]:
        """The rows of one rows event (as for :meth:`read_event`) as ``(keys, rows)`` of text in
        format ``fmt`` (see :func:`_raw_event_reader`), ``key_idx`` the key columns' positions.
        Raises :class:`NotRaw` for an event to read with :meth:`read_event` instead: a column
        the format cannot write (:meth:`raw_kinds`), not every column present, a key changed,
        or anything that does not decode."""
        n = len(self._compiled)
        if number_of_columns != n:
            raise NotRaw
        bm = (n + 7) >> 3
        bitmaps = buf[start : start + (2 * bm if kind == "update" else bm)]
        reader = self._raw_readers.get((kind, bitmaps, fmt.name))
        if reader is None:
            kinds = self.raw_kinds(fmt)
            if kinds is None or bitmaps != self._all_present * (len(bitmaps) // bm):
                raise NotRaw
            cols, nbytes, _ = self._columns_for(bitmaps[:bm])
            reader = _raw_event_reader(kind, cols, nbytes, key_idx, kinds, fmt)
            self._raw_readers[(kind, bitmaps, fmt.name)] = reader
        try:
            return reader(buf, start + len(bitmaps), end)
        except Exception:  # noqa: BLE001 - read again as change records, which reports it
            raise NotRaw from None

    def _reader(self, kind: str, buf: bytes, start: int, bm: int, record: Record | None) -> EventReader:
        if kind not in ("write", "update", "delete"):
            raise ValueError(f"kind must be 'write', 'update' or 'delete', not {kind!r}")
        cols1, nb1, _ = self._columns_for(buf[start : start + bm])
        cols2, nb2 = cols1, nb1
        if kind == "update":
            cols2, nb2, _ = self._columns_for(buf[start + bm : start + 2 * bm])
        reader = _event_reader(kind, cols1, nb1, cols2, nb2, self.key_columns, record)
        readers = self._readers[kind]
        if len(readers) < 64:
            readers[buf[start : start + (2 * bm if kind == "update" else bm)]] = (record, reader)
        return reader

    def _read_slowly(self, kind: str, buf: bytes, start: int, end: int, bm: int) -> None:
        """Read the event's images one by one (:func:`_row_reader`): raises the DataError that
        names the row and column of a row that does not decode."""
        cols1, nb1, read1 = self._columns_for(buf[start : start + bm])
        cols2, nb2, read2 = cols1, nb1, read1
        pos = start + bm
        if kind == "update":
            cols2, nb2, read2 = self._columns_for(buf[pos : pos + bm])
            pos += bm
        cols, nbytes, row_start = cols1, nb1, pos
        try:
            while pos < end:
                cols, nbytes, row_start = cols1, nb1, pos
                _, pos = read1(buf, pos)
                if kind == "update":
                    cols, nbytes, row_start = cols2, nb2, pos
                    _, pos = read2(buf, pos)
        except (_BadDate, ValueError, IndexError, TypeError, struct.error, UnicodeDecodeError,
                KeyError) as exc:
            raise self._error(buf, row_start, cols, nbytes, exc) from None

    # ------------------------------------------------------------------ error reporting

    def _error(
        self, buf: bytes, pos: int, cols: Sequence[Present], nbytes: int, exc: Exception
    ) -> DataError:
        """A DataError for the row at ``pos``: table, key (if decodable), column, cause.

        Re-reads the row column by column (slow path) to find the failing column, and keeps
        going past a bad date (its width is fixed) to find key values after it.
        """
        where = f"`{self.schema}`.`{self.table}`"
        nulls = int.from_bytes(buf[pos : pos + nbytes], "little")
        p = pos + nbytes
        values: dict[str, Any] = {}
        failed: tuple[str, Exception] | None = None
        for kind, name, a, b, bit in cols:
            if nulls & bit:
                values[name] = None
                continue
            try:
                values[name], p = _read_value(buf, p, kind, a, b)
            except _BadDate as bad:
                if failed is None:
                    failed = (name, bad)
                p += b  # dates are fixed-width: the rest of the row is still readable
            except Exception as other:  # noqa: BLE001 - reported, not swallowed
                if failed is None:
                    failed = (name, other)
                break
        if failed is None:  # should not happen: fall back to the original exception
            failed = ("?", exc)
        name, cause = failed
        key = self._describe_key(values)
        if isinstance(cause, _BadDate):
            index = self.column_names.index(name)
            return DataError(
                f"{where} row with {key}: column `{name}` ({self._type_names[index]}) holds"
                f" the zero or invalid date '{cause.text}', which has no Python value;"
                " set `zero_dates: null` in the flow config to replicate such dates as NULL"
            )
        type_name = (
            self._type_names[self.column_names.index(name)] if name in self.column_names else "?"
        )
        if str(cause).startswith(_LOST):
            return DataError(
                f"{where} row with {key}: column `{name}` ({type_name}) holds a member whose"
                " name the binlog table map parser could not read (python-mysql-replication"
                " decodes ENUM/SET names as UTF-8 and blanks the others; the column's charset"
                " is not UTF-8): convert the column to utf8mb4 to replicate it"
            )
        return DataError(
            f"{where} row with {key}: cannot decode column `{name}` ({type_name}):"
            f" {type(cause).__name__}: {cause}"
        )

    def _describe_key(self, values: dict[str, Any]) -> str:
        if not self.key_columns:
            return "no primary key"
        if not all(k in values for k in self.key_columns):
            return "key (" + ", ".join(self.key_columns) + ") not decodable"
        return "key " + ", ".join(f"{k}={values[k]!r}" for k in self.key_columns)


# --------------------------------------------------------------------------- library glue


def rows_kind(event: Any) -> str:
    """``'write'``, ``'update'`` or ``'delete'`` for a library RowsEvent."""
    event_type = int(event.event_type)
    if event_type == _PARTIAL_UPDATE_ROWS_EVENT:
        raise DataError(
            "MySQL partial JSON updates (binlog_row_value_options=PARTIAL_JSON) are not"
            " supported: set binlog_row_value_options='' on the source server"
        )
    try:
        return _KIND_BY_EVENT_TYPE[event_type]
    except KeyError:
        raise ValueError(f"event type {event_type} is not a rows event") from None


def rows_body(event: Any) -> tuple[bytes, int]:
    """``(body, number_of_columns)`` of a library RowsEvent, for :meth:`RowDecoder.decode`.

    Call it right after the event was built, before ``.rows`` is touched (ValueError
    otherwise): it consumes the rest of the event from ``event.packet``, so afterwards
    ``.rows`` is empty. The subclass
    constructors (Write/Update/DeleteRowsEvent) have already read the columns-present
    bitmap(s); they are put back in front. ``event.event_size`` excludes the 19-byte header
    and, when the stream uses checksums, the 4-byte checksum (BinLogPacketWrapper subtracts
    23 instead of 19), so the bytes left up to it are exactly the row images.
    """
    if getattr(event, "_RowsEvent__rows", None) is not None:
        raise ValueError("the rows of this event were already read through .rows")
    packet = event.packet
    remaining = int(event.event_size) - int(packet.read_bytes)
    if remaining < 0:
        raise ValueError("the rows event was already read past its end")
    rest: bytes = packet.read(remaining) if remaining else b""
    head: bytes = bytes(event.columns_present_bitmap)
    second = getattr(event, "columns_present_bitmap2", None)
    if second is not None:
        head += bytes(second)
    return head + rest, int(event.number_of_columns)
