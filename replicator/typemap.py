"""Column types across engines: our own map, chosen for exactness over resemblance.

Every MySQL/MariaDB value must arrive unchanged in PostgreSQL, so the map picks the PostgreSQL
type that holds the whole MySQL range: ``INT UNSIGNED`` → ``bigint``, ``BIGINT UNSIGNED`` →
``numeric(20,0)``, ``TIME`` (−838:59:59 … 838:59:59) → ``interval``, ``TIMESTAMP`` →
``timestamptz``, ``CHAR(n)`` → ``varchar(n)`` (MySQL strips the padding PostgreSQL's char would
add), ``ENUM``/``SET`` → ``text``, ``BIT(n)`` → ``bigint``/``numeric(20,0)``. sqlglot parses the
statements; it does not choose the types (it maps ``INT UNSIGNED`` to a type PostgreSQL
rejects), so the mapping lives here, tested as a table of input → expected output.

The other way, :func:`pg_to_mysql` picks the MySQL/MariaDB type that holds every PostgreSQL
value *as the writers send it* (``replicator/mysql/writer.py``): ``timestamptz`` → ``DATETIME(6)``
holding UTC, ``boolean`` → ``BOOL`` (0/1), ``uuid`` → ``CHAR(36)``, ``json``/``jsonb`` and
arrays (of elements JSON represents as themselves) → ``JSON``, ``bytea`` → ``LONGBLOB``,
``text`` → ``LONGTEXT``. MySQL counts every ``VARCHAR``'s maximum bytes (4 per character in
utf8mb4) against a 65,535-byte row, so only ``varchar(n ≤ 255)`` stays ``VARCHAR``; longer
ones are ``LONGTEXT`` (the source enforces the length). Key columns cannot be ``TEXT``/``BLOB``
in MySQL: an unbounded ``text``/``bytea`` key becomes ``VARCHAR(255)``/``VARBINARY(255)``.
Types without an exact home (``interval`` with its months, ``timetz``, ``money``, network,
bit-string, range and user-defined types) raise :class:`UnsupportedType`.

:class:`ColumnDef`/:class:`TableDef` are a source table's full definition as the catalogs read it
(``read_definition`` in ``pg/catalog.py`` and ``mysql/catalog.py``), from which
``replicator/schema.py`` builds target tables.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from .errors import SchemaError
from .records import TableId

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


class UnsupportedType(SchemaError, ValueError):
    """No column type of the target engine holds every value of this source type exactly."""


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


_PG_SIMPLE = {
    "smallint": "SMALLINT", "integer": "INT", "bigint": "BIGINT",
    "real": "FLOAT", "double precision": "DOUBLE", "boolean": "BOOL", "date": "DATE",
    "json": "JSON", "jsonb": "JSON", "uuid": "CHAR(36)",
}
# Arrays arrive as Python lists and are written as JSON text: only elements JSON holds as
# themselves (not numeric/real: Decimal becomes a string, float4 a widened double; not
# json/jsonb: a JSON null element and a NULL element would both become null).
_PG_JSON_ELEMENTS = {"smallint", "integer", "bigint", "double precision", "boolean", "text",
                     "character varying", "uuid"}


def pg_to_mysql(column_type: str, *, key: bool = False) -> str:
    """A PostgreSQL ``format_type`` (``numeric(12,2)``, ``timestamp(3) with time zone``, …) →
    MySQL/MariaDB; ``key``: the column is part of the primary key."""
    text = " ".join(column_type.lower().split())
    m = _TYPE.match(text.removesuffix("[]"))
    base = " ".join(m.group("base").split()) if m else ""
    args = [int(a) for a in (m.group("args") or "").split(",") if a.strip().lstrip("-").isdigit()] if m else []
    rest = m.group("rest").strip() if m else "?"
    if text.endswith("[]"):
        if base in _PG_JSON_ELEMENTS and not rest:
            return "JSON"
    elif base in _PG_SIMPLE and not rest:
        return _PG_SIMPLE[base]
    elif base == "numeric" and not rest:
        if not args:
            return "DECIMAL(65,30)"  # the widest MySQL allows; schema.py notes the limits
        p, s = args[0], args[1] if len(args) > 1 else 0
        if p <= 65 and 0 <= s <= min(p, 30):
            return f"DECIMAL({p},{s})"
    elif base in ("text", "character varying", "character") and not rest:
        n = args[0] if args else None
        if base == "character" and n is not None and n <= 255:
            return f"CHAR({n})"
        if key:
            return f"VARCHAR({n or 255})"
        return f"VARCHAR({n})" if n is not None and n <= 255 else "LONGTEXT"
    elif base == "bytea" and not rest:
        return "VARBINARY(255)" if key else "LONGBLOB"
    elif base == "timestamp" and rest in ("without time zone", "with time zone"):
        return f"DATETIME({args[0] if args else 6})"  # with time zone: the UTC instant
    elif base == "time" and rest == "without time zone":
        return f"TIME({args[0] if args else 6})"
    raise UnsupportedType(f"no MySQL/MariaDB type holds every value of the PostgreSQL type {column_type!r}")


def target_type(column_type: str, source_engine: str, target_engine: str, *, key: bool = False) -> str:
    """The target column type for a source column type; engines are ``postgresql``/``mysql``.
    The same engine keeps the type as declared."""
    if source_engine == target_engine:
        return column_type
    if source_engine == "mysql":
        return mysql_to_pg(column_type)
    return pg_to_mysql(column_type, key=key)


@dataclass(frozen=True)
class ColumnDef:
    """One column as the source catalog defines it: what creating a target table needs."""

    name: str
    type: str  # as the engine reports it: PostgreSQL format_type, MySQL COLUMN_TYPE (or "json")
    nullable: bool
    default: str | None = None  # the default as an SQL expression of its engine; None: none
    auto_increment: bool = False  # PostgreSQL identity or serial, MySQL AUTO_INCREMENT
    generated: str | None = None  # a generated column's expression
    on_update: str | None = None  # MySQL ``ON UPDATE`` expression
    collation: str | None = None  # MySQL string columns


@dataclass(frozen=True)
class TableDef:
    table: TableId
    columns: tuple[ColumnDef, ...]
    primary_key: tuple[str, ...]
