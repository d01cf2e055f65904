"""MySQL/MariaDB -> PostgreSQL or MySQL/MariaDB passthrough: rows events read straight into text.

Why: in a plain MySQL -> PostgreSQL flow most of the per-row CPU time after decoding went to
carrying each row as a dict in a change record through the pipeline's per-change loop, the
netting batch and the mapping, and to psycopg turning the values into COPY text again. For a
table whose columns all have simple types the row decoder can write each row's COPY line
itself, in the generated loop that decodes it (:meth:`~replicator.mysql.rows.RowDecoder.read_raw`):
the source then emits :class:`~replicator.pg.passthrough.RawRows` groups as the PostgreSQL
passthrough does, and the pipeline, :class:`~replicator.pg.passthrough.RawBatch` and the
PostgreSQL sink's ``apply_raw`` handle them per group. A row is one ``[line]``: the sink joins
fields with tabs, and a one-field row is the line itself. Towards MySQL/MariaDB the row is its
``(v1,v2,…)`` text for a multi-row ``INSERT … ON DUPLICATE KEY UPDATE``
(:data:`~replicator.mysql.rows.MYSQL_VALUES`), which the MySQL sink's ``apply_raw`` joins into
statements: the texts the writer renders for the same values.

Exactness: the line is what psycopg writes for the decoded values (``str`` of ints, Decimals,
dates and datetimes; text escaped for COPY; ``\\N`` for NULL), checked against psycopg for
every captured event in ``tests/test_mysql_passthrough.py``. A table takes this path only when
every column's target has exactly the type the replicator would create for it
(:func:`~replicator.typemap.mysql_to_pg`; towards MySQL: the very same type), so every source
value fits; events with anything
else -- a key change, a NUL in text, a zero date, a row image without every column, a table
map whose columns differ from the bound ones -- are read as change records as before, and
report their errors the same way.
"""

from __future__ import annotations

import re

from ..config import TableConfig
from ..mapping import TableInfo, TableMapping
from ..pg.passthrough import passthrough_key
from ..typemap import UnsupportedType, mysql_to_pg

# Source base types whose values the row decoder writes as COPY text (see RowDecoder.raw_kinds)
_BASES = frozenset({
    "tinyint", "smallint", "mediumint", "int", "integer", "bigint", "year", "bit",
    "float", "double", "real", "decimal", "numeric", "dec", "fixed", "date", "datetime", "timestamp",
    "char", "varchar", "character", "character varying", "nchar", "nvarchar",
    "tinytext", "text", "mediumtext", "longtext", "enum", "set",
    "varbinary", "tinyblob", "blob", "mediumblob", "longblob", "geometry",
})
_BASE = re.compile(r"^\s*(character\s+varying|[a-z]+)", re.IGNORECASE)


def _pg_type(type_name: str) -> str:
    """PostgreSQL's ``format_type`` spelling in the typemap's spelling."""
    t = " ".join(type_name.lower().split())
    t = t.replace("character varying", "varchar").replace(" without time zone", "")
    if t.endswith(" with time zone"):
        t = t[: -len(" with time zone")]
        t = "timestamptz" + t[len("timestamp"):] if t.startswith("timestamp") else t
    return t.replace(", ", ",")


def _fits_pg(source_type: str, target_type: str) -> bool:
    """A simple source type whose target column has the type the typemap would create."""
    m = _BASE.match(source_type)
    if m is None or " ".join(m.group(1).lower().split()) not in _BASES:
        return False
    try:
        return _pg_type(target_type) == _pg_type(mysql_to_pg(source_type))
    except UnsupportedType:
        return False


def _any_key(_type: str) -> bool:
    return True  # the reader's keys are values (ints, strings, dates), which net exactly


def pg_passthrough_key(
    table: TableConfig, mapping: TableMapping, source: TableInfo, target: TableInfo
) -> tuple[str, ...] | None:
    """The source column names of the target key, in target-key order, if the table's rows
    can travel as COPY text to PostgreSQL; None if they cannot (a mapping, another type)."""
    return passthrough_key(table, mapping, source, target, _fits_pg, _any_key)


def mysql_passthrough_key(
    table: TableConfig, mapping: TableMapping, source: TableInfo, target: TableInfo
) -> tuple[str, ...] | None:
    """As :func:`pg_passthrough_key`, towards MySQL/MariaDB: every column lands in a target
    column of the very same declared type (the row decoder refuses the types it cannot write
    as SQL literals)."""
    return passthrough_key(table, mapping, source, target, str.__eq__, _any_key)
