"""PostgreSQL catalog queries shared by the reader, the writer and ``check``."""

from __future__ import annotations

import psycopg

from ..mapping import ColumnInfo, TableInfo
from ..records import TableId

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
