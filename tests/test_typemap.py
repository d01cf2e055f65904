"""The type maps (MySQL → PostgreSQL, PostgreSQL → MySQL/MariaDB), as tables of input → expected output."""

from __future__ import annotations

import pytest

from replicator.typemap import UnsupportedType, mysql_to_pg, pg_to_mysql, target_type

CASES = [
    ("tinyint(4)", "smallint"),
    ("tinyint(3) unsigned", "smallint"),
    ("tinyint(1)", "smallint"),
    ("smallint(6)", "smallint"),
    ("smallint(5) unsigned", "integer"),
    ("mediumint(9)", "integer"),
    ("mediumint(8) unsigned", "integer"),
    ("int(11)", "integer"),
    ("int(10) unsigned", "bigint"),
    ("int unsigned zerofill", "bigint"),
    ("bigint(20)", "bigint"),
    ("bigint(20) unsigned", "numeric(20,0)"),
    ("decimal(65,30)", "numeric(65,30)"),
    ("decimal(10,0)", "numeric(10,0)"),
    ("decimal(12,2) unsigned", "numeric(12,2)"),
    ("float", "real"),
    ("float(30)", "double precision"),
    ("double", "double precision"),
    ("date", "date"),
    ("datetime", "timestamp(0)"),
    ("datetime(6)", "timestamp(6)"),
    ("timestamp(3)", "timestamptz(3)"),
    ("time", "interval second(0)"),
    ("time(6)", "interval second(6)"),
    ("year(4)", "smallint"),
    ("char(10)", "varchar(10)"),
    ("varchar(255)", "varchar(255)"),
    ("text", "text"),
    ("longtext", "text"),
    ("binary(16)", "bytea"),
    ("varbinary(255)", "bytea"),
    ("longblob", "bytea"),
    ("bit(1)", "bigint"),
    ("bit(64)", "numeric(20,0)"),
    ("enum('a','','b')", "text"),
    ("set('x','y')", "text"),
    ("json", "jsonb"),
]


@pytest.mark.parametrize(("mysql", "pg"), CASES)
def test_mysql_type_maps_to_a_postgres_type_holding_every_value(mysql: str, pg: str) -> None:
    assert mysql_to_pg(mysql) == pg


def test_unknown_type_is_a_clear_error() -> None:
    with pytest.raises(UnsupportedType, match="no PostgreSQL type for the MySQL type 'vector"):
        mysql_to_pg("vector(3)")


# PostgreSQL → MySQL/MariaDB: the type that holds every value as the MySQL writer sends it
PG_CASES = [
    ("smallint", "SMALLINT"),
    ("integer", "INT"),
    ("bigint", "BIGINT"),
    ("numeric(12,2)", "DECIMAL(12,2)"),
    ("numeric(65,30)", "DECIMAL(65,30)"),
    ("numeric(10)", "DECIMAL(10,0)"),
    ("numeric", "DECIMAL(65,30)"),
    ("real", "FLOAT"),
    ("double precision", "DOUBLE"),
    ("text", "LONGTEXT"),
    ("character varying(20)", "VARCHAR(20)"),
    ("character varying(255)", "VARCHAR(255)"),
    ("character varying(256)", "LONGTEXT"),
    ("character varying", "LONGTEXT"),
    ("character(5)", "CHAR(5)"),
    ("character(300)", "LONGTEXT"),
    ("boolean", "BOOL"),
    ("date", "DATE"),
    ("time without time zone", "TIME(6)"),
    ("time(3) without time zone", "TIME(3)"),
    ("timestamp without time zone", "DATETIME(6)"),
    ("timestamp(0) without time zone", "DATETIME(0)"),
    ("timestamp with time zone", "DATETIME(6)"),
    ("timestamp(3) with time zone", "DATETIME(3)"),
    ("json", "JSON"),
    ("jsonb", "JSON"),
    ("bytea", "LONGBLOB"),
    ("uuid", "CHAR(36)"),
    ("integer[]", "JSON"),
    ("text[]", "JSON"),
    ("character varying(10)[]", "JSON"),
    ("boolean[]", "JSON"),
]

PG_KEY_CASES = [
    ("text", "VARCHAR(255)"),
    ("character varying", "VARCHAR(255)"),
    ("character varying(1000)", "VARCHAR(1000)"),
    ("bytea", "VARBINARY(255)"),
    ("integer", "INT"),
]

PG_UNSUPPORTED = [
    "interval", "time with time zone", "time(3) with time zone", "money", "inet", "cidr", "macaddr",
    "bit(3)", "bit varying(5)", "xml", "tsvector", "point", "int4range", '"char"', "mood",
    "numeric(70,2)", "numeric(40,35)",
    "numeric[]", "real[]", "date[]", "timestamp with time zone[]", "jsonb[]", "json[]",
]


@pytest.mark.parametrize(("pg", "mysql"), PG_CASES)
def test_postgres_type_maps_to_a_mysql_type_holding_every_value(pg: str, mysql: str) -> None:
    assert pg_to_mysql(pg) == mysql


@pytest.mark.parametrize(("pg", "mysql"), PG_KEY_CASES)
def test_postgres_key_column_gets_a_type_mysql_can_index(pg: str, mysql: str) -> None:
    assert pg_to_mysql(pg, key=True) == mysql


@pytest.mark.parametrize("pg", PG_UNSUPPORTED)
def test_postgres_type_without_an_exact_mysql_home_is_a_clear_error(pg: str) -> None:
    with pytest.raises(UnsupportedType, match="no MySQL/MariaDB type"):
        pg_to_mysql(pg)


@pytest.mark.parametrize(
    ("source", "target", "declared", "expected"),
    [
        ("postgresql", "postgresql", "interval", "interval"),
        ("postgresql", "postgresql", "numeric", "numeric"),
        ("mysql", "mysql", "int(10) unsigned", "int(10) unsigned"),
        ("mysql", "mysql", "json", "json"),
        ("mysql", "postgresql", "int(10) unsigned", "bigint"),
        ("postgresql", "mysql", "timestamp with time zone", "DATETIME(6)"),
    ],
)
def test_target_type_keeps_the_declared_type_on_the_same_engine(
    source: str, target: str, declared: str, expected: str
) -> None:
    assert target_type(declared, source, target) == expected


def test_unsupported_type_is_a_schema_error_the_cli_reports_in_one_line() -> None:
    from replicator.errors import SchemaError

    assert issubclass(UnsupportedType, SchemaError) and issubclass(UnsupportedType, ValueError)
