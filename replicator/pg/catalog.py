"""PostgreSQL catalog queries shared by the reader, the writer and ``check``."""

from __future__ import annotations

import psycopg

from ..mapping import ColumnInfo, TableInfo
from ..records import TableId
from ..typemap import ColumnDef, TableDef

_COLUMNS = """
SELECT a.attname, format_type(a.atttypid, a.atttypmod), NOT a.attnotnull, c.relreplident
FROM pg_class c
JOIN pg_namespace n ON n.oid = c.relnamespace
JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
WHERE n.nspname = %s AND c.relname = %s AND c.relkind IN ('r', 'p')
ORDER BY a.attnum
"""

_PRIMARY_KEY = """
SELECT a.attname
FROM pg_index i
JOIN pg_class c ON c.oid = i.indrelid
JOIN pg_namespace n ON n.oid = c.relnamespace
JOIN LATERAL unnest(i.indkey) WITH ORDINALITY AS k(attnum, ord) ON true
JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum = k.attnum
WHERE n.nspname = %s AND c.relname = %s AND i.indisprimary
ORDER BY k.ord
"""


def describe_table(conn: psycopg.Connection[tuple[object, ...]], table: TableId) -> TableInfo | None:
    rows = conn.execute(_COLUMNS, (table.schema, table.name)).fetchall()
    if not rows:
        return None
    pk = conn.execute(_PRIMARY_KEY, (table.schema, table.name)).fetchall()
    return TableInfo(
        table=table,
        columns=tuple(ColumnInfo(str(r[0]), str(r[1]), bool(r[2])) for r in rows),
        primary_key=tuple(str(r[0]) for r in pk),
        replica_identity=str(rows[0][3]),
    )


_DEFINITION = """
SELECT a.attname, format_type(a.atttypid, a.atttypmod), NOT a.attnotnull,
       pg_get_expr(d.adbin, d.adrelid), a.attidentity <> '', a.attgenerated <> ''
FROM pg_class c
JOIN pg_namespace n ON n.oid = c.relnamespace
JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
WHERE n.nspname = %s AND c.relname = %s AND c.relkind IN ('r', 'p')
ORDER BY a.attnum
"""


def read_definition(conn: psycopg.Connection[tuple[object, ...]], table: TableId) -> TableDef | None:
    """Every column with its type, nullability and default (``pg_get_expr``), and the primary
    key, or None if the table is missing. Identity columns and serials (a ``nextval(…)``
    default) are ``auto_increment`` without a default: the sequence is the source's own."""
    rows = conn.execute(_DEFINITION, (table.schema, table.name)).fetchall()
    if not rows:
        return None
    pk = conn.execute(_PRIMARY_KEY, (table.schema, table.name)).fetchall()
    columns = []
    for name, type_, nullable, default, identity, generated in rows:
        serial = isinstance(default, str) and default.startswith("nextval(")
        columns.append(ColumnDef(
            name=str(name),
            type=str(type_),
            nullable=bool(nullable),
            default=None if serial or generated or default is None else str(default),
            auto_increment=bool(identity) or serial,
            generated=str(default) if generated else None,
        ))
    return TableDef(table, tuple(columns), tuple(str(r[0]) for r in pk))


def schema_exists(conn: psycopg.Connection[tuple[object, ...]], schema: str) -> bool:
    return conn.execute("SELECT 1 FROM pg_namespace WHERE nspname = %s", (schema,)).fetchone() is not None
