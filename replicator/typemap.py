"""Column types across engines: our own map, chosen for exactness over resemblance.

Every MySQL/MariaDB value must arrive unchanged in PostgreSQL, so the map picks the PostgreSQL
type that holds the whole MySQL range: ``INT UNSIGNED`` → ``bigint``, ``BIGINT UNSIGNED`` →
``numeric(20,0)``, ``TIME`` (−838:59:59 … 838:59:59) → ``interval``, ``TIMESTAMP`` →
``timestamptz``, ``CHAR(n)`` → ``varchar(n)`` (MySQL strips the padding PostgreSQL's char would
add), ``ENUM``/``SET`` → ``text``, ``BIT(n)`` → ``bigint``/``numeric(20,0)``. sqlglot parses the
statements; it does not choose the types (it maps ``INT UNSIGNED`` to a type PostgreSQL
rejects), so the mapping lives here, tested as a table of input → expected output.
"""

from __future__ import annotations

import re

_TYPE = re.compile(
    r"^\s*(?P<base>double\s+precision|character\s+varying|[a-z0-9]+)\s*(?:\((?P<args>[^)]*)\))?(?P<rest>.*)$",
    re.IGNORECASE | re.DOTALL,
)

_INT_SIGNED = {"tinyint": "smallint", "smallint": "smallint", "mediumint": "integer", "int": "integer",
               "integer": "integer", "bigint": "bigint"}
_INT_UNSIGNED = {"tinyint": "smallint", "smallint": "integer", "mediumint": "integer", "int": "bigint",
                 "integer": "bigint", "bigint": "numeric(20,0)"}
_SIMPLE = {
    "float": "real", "double": "double precision", "double precision": "double precision", "real": "double precision",
    "date": "date", "year": "smallint", "json": "jsonb",
    "tinytext": "text", "text": "text", "mediumtext": "text", "longtext": "text",
    "tinyblob": "bytea", "blob": "bytea", "mediumblob": "bytea", "longblob": "bytea",
    "binary": "bytea", "varbinary": "bytea", "enum": "text", "set": "text",
    "geometry": "bytea", "point": "bytea", "linestring": "bytea", "polygon": "bytea",
    "bool": "smallint", "boolean": "smallint", "uuid": "uuid", "inet6": "inet", "inet4": "inet",
}


class UnsupportedType(ValueError):
    pass


def mysql_to_pg(column_type: str) -> str:
    """A MySQL/MariaDB ``COLUMN_TYPE`` (``int(10) unsigned``, ``decimal(65,30)``, …) → PostgreSQL."""
    m = _TYPE.match(column_type)
    if m is None:
        raise UnsupportedType(f"cannot read the column type {column_type!r}")
    base = " ".join(m.group("base").lower().split())
    args = [a.strip() for a in (m.group("args") or "").split(",") if a.strip()]
    rest = m.group("rest").lower()
    if base in _INT_SIGNED:
        return (_INT_UNSIGNED if "unsigned" in rest else _INT_SIGNED)[base]
    if base in ("decimal", "numeric", "dec", "fixed"):
        p = args[0] if args else "10"
        s = args[1] if len(args) > 1 else "0"
        return f"numeric({p},{s})"
    if base in ("float", "double", "double precision", "real") and len(args) == 2:
        return "double precision" if base != "float" or int(args[0]) > 24 else "real"
    if base == "float" and len(args) == 1:
        return "real" if int(args[0]) <= 24 else "double precision"
    if base in ("datetime", "timestamp", "time"):
        fsp = f"({args[0]})" if args and args[0] != "0" else "(0)"
        if base == "datetime":
            return f"timestamp{fsp}"
        if base == "timestamp":
            return f"timestamptz{fsp}"
        return f"interval{' second' + fsp if args and args[0] != '0' else ' second(0)'}"
    if base in ("char", "varchar", "character", "character varying", "nchar", "nvarchar"):
        return f"varchar({args[0]})" if args else "text"
    if base == "bit":
        n = int(args[0]) if args else 1
        return "bigint" if n <= 63 else "numeric(20,0)"
    if base in _SIMPLE:
        return _SIMPLE[base]
    raise UnsupportedType(f"no PostgreSQL type for the MySQL type {column_type!r}")
