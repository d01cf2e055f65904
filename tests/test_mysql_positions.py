"""MariaDB GTID states and binlog file positions: parsing, printing, ordering."""

from __future__ import annotations

import pytest

from replicator.mysql.positions import FilePos, MariaGtid


def test_gtid_round_trip_sorted_by_domain() -> None:
    g = MariaGtid.parse("1-7-3, 0-1-42")
    assert g.domains == ((0, 1, 42), (1, 7, 3))
    assert str(g) == "0-1-42,1-7-3"
    assert str(MariaGtid.parse("")) == ""


def test_gtid_order_is_per_domain() -> None:
    a = MariaGtid.parse("0-1-10")
    b = MariaGtid.parse("0-1-11")
    c = MariaGtid.parse("0-1-11,1-2-1")
    assert b > a and a < b and b >= a and not a >= b
    assert c >= b and c > b and not b >= c
    assert a >= MariaGtid() and a > MariaGtid()
    assert MariaGtid.parse("0-1-5") == MariaGtid.parse("0-1-5")


def test_gtid_advance_replaces_only_its_domain() -> None:
    g = MariaGtid.parse("0-1-10,1-2-5").advance(1, 3, 6)
    assert str(g) == "0-1-10,1-3-6"
    assert str(MariaGtid().advance(0, 1, 1)) == "0-1-1"


def test_bad_positions_are_clear_errors() -> None:
    with pytest.raises(ValueError, match="not a MariaDB GTID position"):
        MariaGtid.parse("0-1")
    with pytest.raises(ValueError, match="not a binlog position"):
        FilePos.parse("mysql-bin.000001")


def test_file_positions_order_by_file_then_offset() -> None:
    assert FilePos.parse("mysql-bin.000002:4") > FilePos.parse("mysql-bin.000001:9999")
    assert str(FilePos.parse("mysql-bin.000001:120")) == "mysql-bin.000001:120"
