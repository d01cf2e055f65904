"""The MySQL → PostgreSQL type map, as a table of input → expected output."""

from __future__ import annotations

import pytest

from replicator.typemap import UnsupportedType, mysql_to_pg

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
