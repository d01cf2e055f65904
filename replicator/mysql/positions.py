"""Binlog positions: MariaDB GTID states and MySQL file/position, totally ordered per source.

A MariaDB GTID state is one ``domain-server-seq`` per replication domain (``0-1-42,1-7-3``): the
last transaction applied in each domain. Streaming resumes after exactly those transactions
(``@slave_connect_state``), at a transaction boundary. One state is at or past another when it
is at or past it in every domain the other names.

MySQL sources use ``file:position`` of the end of the last applied transaction; that works with
GTIDs on or off (it does not follow a fail-over to another server).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, order=False)
class MariaGtid:
    domains: tuple[tuple[int, int, int], ...] = ()  # (domain, server, seq), sorted by domain

    @classmethod
    def parse(cls, text: str) -> MariaGtid:
        text = text.strip()
        if not text:
            return cls()
        found: dict[int, tuple[int, int, int]] = {}
        for part in text.split(","):
            try:
                d, s, n = (int(x) for x in part.strip().split("-"))
            except ValueError:
                raise ValueError(f"not a MariaDB GTID position: {text!r} (expected domain-server-seq[,…])") from None
            found[d] = (d, s, n)
        return cls(tuple(sorted(found.values())))

    def advance(self, domain: int, server: int, seq: int) -> MariaGtid:
        rest = [g for g in self.domains if g[0] != domain]
        return MariaGtid(tuple(sorted([*rest, (domain, server, seq)])))

    def seq(self, domain: int) -> int:
        for d, _, n in self.domains:
            if d == domain:
                return n
        return 0

    def __str__(self) -> str:
        return ",".join(f"{d}-{s}-{n}" for d, s, n in self.domains)

    def __ge__(self, other: object) -> bool:
        if not isinstance(other, MariaGtid):
            return NotImplemented
        return all(self.seq(d) >= n for d, _, n in other.domains)

    def __gt__(self, other: object) -> bool:
        if not isinstance(other, MariaGtid):
            return NotImplemented
        return self >= other and self != other

    def __le__(self, other: object) -> bool:
        if not isinstance(other, MariaGtid):
            return NotImplemented
        return other >= self

    def __lt__(self, other: object) -> bool:
        if not isinstance(other, MariaGtid):
            return NotImplemented
        return other > self


@dataclass(frozen=True, order=True)
class FilePos:
    file: str
    pos: int

    @classmethod
    def parse(cls, text: str) -> FilePos:
        name, sep, pos = text.rpartition(":")
        if not sep or not pos.isdigit():
            raise ValueError(f"not a binlog position: {text!r} (expected FILE:POSITION)")
        return cls(name, int(pos))

    def __str__(self) -> str:
        return f"{self.file}:{self.pos}"
