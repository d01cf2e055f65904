"""MySQL/MariaDB catalog queries shared by the binlog source, the writer and ``check``."""

from __future__ import annotations

from typing import Any

from ..mapping import ColumnInfo, TableInfo
from ..records import TableId


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
