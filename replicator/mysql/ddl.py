"""Reading MySQL DDL from the binlog: which synced table changed, and how.

Pure: a statement and its default schema in, a :class:`SchemaChange` (or None when the
statement does not touch a synced table) out. sqlglot parses; anything it cannot parse that
still looks like a column change is reported as unsupported rather than guessed at, so the
flow stops before a row is decoded against the wrong columns on the target.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Collection

import sqlglot
from sqlglot import exp

from ..records import AddedColumn, SchemaChange, TableId

logging.getLogger("sqlglot").setLevel(logging.ERROR)  # its fallback warnings are ours to report

_DDL_HEAD = re.compile(r"^\s*(ALTER|RENAME|DROP|CREATE\s+OR\s+REPLACE)\s+TABLE\b", re.IGNORECASE)
_COLUMN_WORDS = re.compile(r"\b(ADD|DROP|MODIFY|CHANGE|RENAME)\b", re.IGNORECASE)


def _table(node: exp.Table, default_schema: str) -> TableId:
    return TableId(node.db or default_schema, node.name)


def _column(coldef: exp.ColumnDef) -> AddedColumn:
    kind = coldef.args.get("kind")
    not_null = False
    default: str | None = None
    for c in coldef.args.get("constraints") or []:
        k = c.args.get("kind")
        if isinstance(k, exp.NotNullColumnConstraint) and not k.args.get("allow_null"):
            not_null = True
        elif isinstance(k, exp.DefaultColumnConstraint):
            default = k.this.sql(dialect="mysql")
    return AddedColumn(
        name=coldef.name,
        type_sql=kind.sql(dialect="mysql") if kind is not None else "",
        not_null=not_null,
        default_sql=default,
        definition_sql=coldef.sql(dialect="mysql"),
    )


def parse_ddl(statement: str, default_schema: str, synced: Collection[TableId]) -> SchemaChange | None:
    if not _DDL_HEAD.match(statement):
        return None
    try:
        tree = sqlglot.parse_one(statement, read="mysql")
    except sqlglot.errors.ParseError:
        tree = None
    if isinstance(tree, exp.Alter) and isinstance(tree.this, exp.Table):
        table = _table(tree.this, default_schema)
        if table not in synced:
            return None
        change = SchemaChange(table, statement)
        for action in tree.args.get("actions") or []:
            if isinstance(action, exp.ColumnDef):
                change.added.append(_column(action))
            elif isinstance(action, exp.Drop) and str(action.args.get("kind", "")).upper() == "COLUMN":
                change.dropped.extend(c.name for c in action.args.get("tables") or [])
            elif isinstance(action, exp.ModifyColumn) and isinstance(action.this, exp.ColumnDef):
                renamed_from = action.args.get("rename_from")
                if renamed_from is not None and renamed_from.name != action.this.name:
                    change.renamed.append((renamed_from.name, action.this.name))
                change.modified.append(_column(action.this))
            elif isinstance(action, exp.RenameColumn):
                change.renamed.append((action.this.name, action.args["to"].name))
            elif isinstance(action, exp.AlterRename):
                change.unsupported = "the table was renamed"
        return change
    if isinstance(tree, exp.Drop) and str(tree.args.get("kind", "")).upper() == "TABLE":
        for node in tree.args.get("tables") or []:
            if isinstance(node, exp.Table) and _table(node, default_schema) in synced:
                return SchemaChange(_table(node, default_schema), statement, unsupported="the table was dropped")
        return None
    touched = [t for t in synced if re.search(rf"(?<![\w$]){re.escape(t.name)}(?![\w$])", statement)]
    if not touched:
        return None
    if statement.lstrip().upper().startswith("RENAME") or _COLUMN_WORDS.search(statement):
        return SchemaChange(touched[0], statement, unsupported="a statement replicator cannot read changed it")
    return None
