"""MySQL/MariaDB catalog queries shared by the binlog source, the writer and ``check``."""

from __future__ import annotations

import re
from typing import Any

from ..mapping import ColumnInfo, TableInfo
from ..records import TableId
from ..typemap import ColumnDef, TableDef


def describe_table(conn: Any, table: TableId) -> TableInfo | None:
    """Columns (COLUMN_TYPE, e.g. ``int(10) unsigned``) and primary key, or None if missing.

    MariaDB's JSON is LONGTEXT with a ``json_valid()`` check: such columns are reported as
    ``json`` so writers and type maps treat them as JSON.
    """
    with conn.cursor() as cur:
        cur.execute(
            "SELECT COLUMN_NAME, COLUMN_TYPE, IS_NULLABLE = 'YES' FROM information_schema.COLUMNS"
            " WHERE TABLE_SCHEMA = %s AND TABLE_NAME = %s ORDER BY ORDINAL_POSITION",
            (table.schema, table.name),
        )
        cols = tuple(ColumnInfo(str(r[0]), str(r[1]), bool(r[2])) for r in cur.fetchall())
        if not cols:
            return None
        cur.execute(
            "SELECT COLUMN_NAME FROM information_schema.KEY_COLUMN_USAGE"
            " WHERE TABLE_SCHEMA = %s AND TABLE_NAME = %s AND CONSTRAINT_NAME = 'PRIMARY'"
            " ORDER BY ORDINAL_POSITION",
            (table.schema, table.name),
        )
        pk = tuple(str(r[0]) for r in cur.fetchall())
        cur.execute(
            "SELECT CHECK_CLAUSE FROM information_schema.CHECK_CONSTRAINTS"
            " WHERE CONSTRAINT_SCHEMA = %s AND TABLE_NAME = %s",
            (table.schema, table.name),
        )
        checks = " ".join(str(r[0]) for r in cur.fetchall()).lower()
    cols = tuple(
        ColumnInfo(c.name, "json", c.nullable) if f"json_valid(`{c.name.lower()}`)" in checks else c
        for c in cols
    )
    return TableInfo(table, cols, pk)


def read_definition(conn: Any, table: TableId) -> TableDef | None:
    """Every column with its type (as :func:`describe_table` reports it, JSON included),
    nullability, default, ``AUTO_INCREMENT``, ``ON UPDATE`` and collation, and the primary key,
    or None if the table is missing.

    Defaults are SQL expressions as MariaDB prints them (``'text'``, ``0``,
    ``current_timestamp(6)``); MySQL prints a constant bare, so it is quoted here. A
    ``TIMESTAMP`` constant is printed in the session's time zone.
    """
    info = describe_table(conn, table)
    if info is None:
        return None
    with conn.cursor() as cur:
        cur.execute("SELECT VERSION()")
        mariadb = "mariadb" in str(cur.fetchone()[0]).lower()
        cur.execute(
            "SELECT COLUMN_DEFAULT, EXTRA, COLLATION_NAME, GENERATION_EXPRESSION"
            " FROM information_schema.COLUMNS"
            " WHERE TABLE_SCHEMA = %s AND TABLE_NAME = %s ORDER BY ORDINAL_POSITION",
            (table.schema, table.name),
        )
        rows = cur.fetchall()
    columns = []
    for col, (default, extra, collation, generation) in zip(info.columns, rows):
        extra = str(extra or "")
        if default is not None and not mariadb and "DEFAULT_GENERATED" not in extra.upper():
            default = "'" + str(default).replace("\\", "\\\\").replace("'", "''") + "'"
        on_update = re.search(r"on update (.+)$", extra, re.IGNORECASE)
        columns.append(ColumnDef(
            name=col.name,
            type=col.type,
            nullable=col.nullable,
            default=None if default is None or generation else str(default),
            auto_increment="auto_increment" in extra.lower(),
            generated=str(generation) if generation else None,
            on_update=on_update.group(1) if on_update else None,
            collation=str(collation) if collation and col.type != "json" else None,
        ))
    return TableDef(table, tuple(columns), info.primary_key)


def schema_exists(conn: Any, schema: str) -> bool:
    with conn.cursor() as cur:
        cur.execute("SELECT 1 FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = %s", (schema,))
        return cur.fetchone() is not None


def base_type(column: ColumnInfo) -> str:
    """The bare type name of a ``COLUMN_TYPE``: ``int(10) unsigned`` -> ``int``."""
    return column.type.lower().split("(")[0].split(" ")[0]
