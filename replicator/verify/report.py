"""What verify found, per table: the report dataclasses, the text report and the JSON.

Separate from the comparison so that the outcome's shape (what the CLI prints, what ``--json``
emits, what tests assert on) can be read and changed without the SQL or the merge; it depends
on nothing else in the package.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class RowDifference:
    """A key present on both sides whose values differ in ``columns`` (source names)."""

    key: dict[str, Any]
    columns: tuple[str, ...]

    def to_json(self) -> dict[str, Any]:
        return {"key": self.key, "columns": list(self.columns)}


@dataclass
class TableReport:
    """The outcome for one table of a flow.

    Keys are dicts of the *source* column names of the target's primary key; ``missing``
    keys (on the source, not on the target) carry source values, ``extra`` keys (only on the
    target) target values. The lists hold the smallest ``max_keys`` keys; ``*_total`` count
    them all. ``error`` says why a table could not be compared (then nothing else is known).
    """

    flow: str
    source: str
    target: str
    source_rows: int | None = None
    target_rows: int | None = None
    chunks: int = 0
    chunks_differing: int = 0
    missing: list[dict[str, Any]] = field(default_factory=list)
    missing_total: int = 0
    extra: list[dict[str, Any]] = field(default_factory=list)
    extra_total: int = 0
    different: list[RowDifference] = field(default_factory=list)
    different_total: int = 0
    renamed: dict[str, str] = field(default_factory=dict)  # source column -> target column
    error: str | None = None
    note: str | None = None
    seconds: float = 0.0

    @property
    def equal(self) -> bool:
        return (
            self.error is None
            and self.chunks_differing == 0
            and self.missing_total == self.extra_total == self.different_total == 0
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "flow": self.flow,
            "source": self.source,
            "target": self.target,
            "equal": self.equal,
            "error": self.error,
            "source_rows": self.source_rows,
            "target_rows": self.target_rows,
            "chunks": self.chunks,
            "chunks_differing": self.chunks_differing,
            "missing": {"total": self.missing_total, "keys": self.missing},
            "extra": {"total": self.extra_total, "keys": self.extra},
            "different": {"total": self.different_total, "rows": [d.to_json() for d in self.different]},
            "note": self.note,
            "seconds": round(self.seconds, 3),
        }


def reports_json(reports: Sequence[TableReport]) -> dict[str, Any]:
    """The whole outcome as one JSON document (``verify --json``)."""
    return {"equal": all(r.equal for r in reports), "tables": [r.to_json() for r in reports]}


def format_report(reports: Sequence[TableReport]) -> str:
    """The human-readable report: per flow and table, the verdict, rows, chunks and keys."""
    lines: list[str] = []
    flow = None
    for r in reports:
        if r.flow != flow:
            flow = r.flow
            lines.append(f"flow {flow}")
        head = f"  {r.source} -> {r.target}: "
        if r.error is not None:
            lines.append(head + f"ERROR {r.error}")
            continue
        chunks = f"{r.chunks} chunk{'s' if r.chunks != 1 else ''}"
        if r.equal:
            lines.append(head + f"equal ({r.source_rows} rows, {chunks}, {r.seconds:.1f} s)")
            continue
        lines.append(
            head + f"DIFFERENT (source {r.source_rows} rows, target {r.target_rows} rows,"
            f" {r.chunks_differing} of {chunks} differ, {r.seconds:.1f} s)"
        )
        for title, total, keys in (
            ("missing on target", r.missing_total, [_key_text(k) for k in r.missing]),
            ("extra on target", r.extra_total, [_key_text(k) for k in r.extra]),
            (
                "different",
                r.different_total,
                [
                    f"{_key_text(d.key)}: " + ", ".join(
                        f"{c} (target {r.renamed[c]})" if c in r.renamed else c for c in d.columns
                    )
                    for d in r.different
                ],
            ),
        ):
            if total:
                shown = f", first {len(keys)} shown" if len(keys) < total else ""
                lines.append(f"    {title}: {total}{shown}")
                lines.extend(f"      {k}" for k in keys)
        if r.note:
            lines.append(f"    note: {r.note}")
    differ = sum(1 for r in reports if not r.equal)
    n = len(reports)
    lines.append(
        f"{n} table{'s' if n != 1 else ''} equal." if not differ
        else f"{differ} of {n} table{'s' if n != 1 else ''} not equal."
    )
    return "\n".join(lines)


def _key_text(key: dict[str, Any]) -> str:
    return ", ".join(f"{k}={v!r}" if isinstance(v, str) else f"{k}={v}" for k, v in key.items())
