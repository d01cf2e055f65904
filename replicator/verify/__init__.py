"""``replicator verify``: do the source and target tables hold the same rows, after the mapping?

The answer must be exact in both directions: never "equal" when a value differs, never
"different" for a value the replicator replicated exactly. Rows are therefore compared through
a **canonical text per value**, computed by each database from its own column type, chosen so
that the value a source column holds and the value the replicator writes into the target column
give the same text — and different values give different texts:

=========================  ===============================================================
kind                       canonical text (both engines)
=========================  ===============================================================
integers, numeric/DECIMAL  the decimal number without trailing fractional zeros (``10.5``,
boolean, BIT, YEAR, money  ``-3``); boolean is 0/1, BIT its unsigned value
double / real, FLOAT       the exact IEEE value as ``<53-bit integer>p<binary exponent>``,
                           computed with arithmetic that is exact in IEEE doubles (MariaDB
                           has no way to show a double's bits, and its shortest text is
                           formatted unlike PostgreSQL's); FLOAT/real widened exactly. The
                           column pair decides the source side's value: a ``real`` sent to a
                           DOUBLE column is its shortest text read as a double (what the
                           replicator writes); a double sent to a FLOAT column is rounded to
                           float32. PostgreSQL to PostgreSQL: the shortest exact text.
text, varchar, ENUM, SET,  the text (MariaDB's converted to utf8mb4). ``char(n)``: PostgreSQL
uuid                       strips the padding, MariaDB never keeps it; a ``char(n)`` source
                           into a ``varchar`` target is compared padded (the target holds the
                           padding), a ``varchar`` into a ``char(n)`` without trailing spaces
bytea, BINARY, BLOB        lower-case hex of the bytes (BINARY(n) with its zero padding)
date                       ``YYYY-MM-DD`` (PostgreSQL ``BC`` and ``infinity`` stay distinct)
timestamp(tz), DATETIME,   microseconds since 1970-01-01, naive values read as UTC (the
TIMESTAMP                  sessions run in UTC: timestamptz and TIMESTAMP are instants, the
                           naive UTC DATETIME the replicator writes for a timestamptz matches)
time, TIME, interval       signed microseconds (MariaDB TIME spans ±838 h; an interval with
                           months or years keeps its text, so ``1 mon`` ≠ ``720:00:00``);
                           interval to interval: the interval's text
json, jsonb, JSON          parsed and written back canonically in Python (sorted keys, no
                           whitespace, numbers by exact value, so ``1.0`` = ``1``, ``1e2`` =
                           ``100``, ``1.50`` = ``1.5``): PostgreSQL's jsonb and MariaDB's verbatim
                           text order keys differently, and jsonb keeps a number's scale
                           while the replicator carries JSON numbers as Python floats. An
                           array sent to a MariaDB JSON column: the JSON the MariaDB writer
                           makes of it, canonicalised the same way
other PostgreSQL types     their text (inet, timetz, …; compared with text columns too)
arrays (PostgreSQL)        their text
=========================  ===============================================================

A pair of column types outside these (a date against a timestamp, say) is reported as a table
error rather than guessed at. NULL is distinct from every text (JSON's ``null`` is a text).

**Chunks are hash buckets of the key, not key ranges.** Key order is not portable: a
``utf8mb4_unicode_ci`` or PAD SPACE key sorts differently from PostgreSQL's, and a binary sort
(``CAST(k AS BINARY)``) cannot use the index, so a range query per chunk would scan the whole
table per chunk. Instead each row's bucket is ``md5(canonical key) mod N`` (N = source rows /
chunk size): both engines compute it from the row alone, so a bucket is exactly the same set of
keys on both sides, whatever the key's type, collation or column count. Each side then makes
**one scan**: ``GROUP BY bucket`` with the row count and the sum of a 60-bit prefix of
``md5(canonical row)`` — only N small rows cross the wire, and source and target run in
parallel. A bucket that differs in count or sum is drilled into: one more scan per side
returns just the rows of the differing buckets, sorted by the key's md5 (an order both engines
and Python agree on), with an md5 per column; Python merges the two streams to find keys
missing on the target, extra on the target, and rows whose columns differ (named). Memory is
bounded throughout: N bucket sums, server-side cursors read in batches through a small queue,
and only the first ``max_keys`` keys per kind are kept (the smallest keys; totals are exact).

JSON columns are canonicalised in Python, so for tables with JSON the first pass streams the
rows (the bucket, the md5 of the SQL-computed columns and the JSON text) instead of aggregating
in SQL: exact, but several times slower (the json module's C code does the parsing and
writing; the drivers' row parsing and the GIL are the limit).

Each side's query is one statement, so each side is a consistent snapshot, but the two
snapshots are taken while the flow may still be applying changes: verify a flow that has caught
up (``run --once``, or a quiet source), or expect the rows in flight to show up as differences.
"""

from __future__ import annotations

from .canonical import canonical_json
from .compare import DEFAULT_CHUNK_SIZE, DEFAULT_MAX_KEYS, select_tables, verify_flow
from .report import RowDifference, TableReport, format_report, reports_json

__all__ = [
    "DEFAULT_CHUNK_SIZE",
    "DEFAULT_MAX_KEYS",
    "RowDifference",
    "TableReport",
    "canonical_json",
    "format_report",
    "reports_json",
    "select_tables",
    "verify_flow",
]
