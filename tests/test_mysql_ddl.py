"""Reading binlog DDL: which synced table changed and how (pure, from statements)."""

from __future__ import annotations

import pytest

from replicator.mysql.ddl import parse_ddl
from replicator.records import AddedColumn, SchemaChange, TableId

T = TableId("crm", "t")
SYNCED = [T, TableId("crm", "orders")]


def test_add_columns_with_types_nullability_and_defaults() -> None:
    q = "ALTER TABLE crm.t ADD COLUMN c INT UNSIGNED NOT NULL DEFAULT 5, ADD d varchar(20) NULL"
    assert parse_ddl(q, "other", SYNCED) == SchemaChange(
        T, q,
        added=[
            AddedColumn("c", "INT UNSIGNED", True, "5", "c INT UNSIGNED NOT NULL DEFAULT 5"),
            AddedColumn("d", "VARCHAR(20)", False, None, "d VARCHAR(20) NULL"),
        ],
    )


def test_drop_and_modify_columns_in_default_schema() -> None:
    assert parse_ddl("alter table `t` drop column x", "crm", SYNCED) == SchemaChange(T, "alter table `t` drop column x", dropped=["x"])
    change = parse_ddl("ALTER TABLE t MODIFY c bigint NOT NULL", "crm", SYNCED)
    assert change is not None and change.modified == [AddedColumn("c", "BIGINT", True, None, "c BIGINT NOT NULL")]
    assert change.unsupported is None


@pytest.mark.parametrize(
    ("statement", "why"),
    [
        ("DROP TABLE IF EXISTS crm.t", "the table was dropped"),
        ("RENAME TABLE t TO t2", "a statement replicator cannot read changed it"),
    ],
)
def test_changes_the_target_cannot_follow_are_flagged(statement: str, why: str) -> None:
    change = parse_ddl(statement, "crm", SYNCED)
    assert change is not None and change.table == T and change.unsupported == why


@pytest.mark.parametrize(
    "statement",
    [
        "ALTER TABLE other ADD x int",
        "ALTER TABLE crm2.t ADD x int",
        "CREATE TABLE tx (id int primary key)",
        "DROP TABLE ttt",
        "INSERT INTO t VALUES (1)",
        "ALTER TABLE attendees ADD COLUMN x int",
    ],
)
def test_statements_not_touching_synced_tables_are_ignored(statement: str) -> None:
    assert parse_ddl(statement, "crm", SYNCED) is None


def test_index_only_alter_changes_no_columns() -> None:
    change = parse_ddl("ALTER TABLE t ADD INDEX idx_x (x)", "crm", SYNCED)
    assert change is not None and (change.added, change.dropped, change.modified, change.unsupported) == ([], [], [], None)


@pytest.mark.parametrize(
    ("statement", "renamed", "modified"),
    [
        ("ALTER TABLE t CHANGE c d bigint", [("c", "d")], ["d"]),
        ("ALTER TABLE t RENAME COLUMN a TO b", [("a", "b")], []),
    ],
)
def test_column_renames_are_reported_with_old_and_new_names(statement: str, renamed: list[tuple[str, str]], modified: list[str]) -> None:
    change = parse_ddl(statement, "crm", SYNCED)
    assert change is not None and change.table == T and change.unsupported is None
    assert change.renamed == renamed
    assert [c.name for c in change.modified] == modified
