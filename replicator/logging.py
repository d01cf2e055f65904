"""Logging setup: structlog, human lines on a terminal, key=value or JSON lines otherwise.

Every event passes through a processor that removes configured secrets (passwords from the
system URLs) from all values, so no code path can leak one into a log line.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import MutableMapping
from typing import Any

import structlog

from .urls import scrub


def setup(fmt: str = "auto", secrets: list[str] | None = None, level: int = logging.INFO) -> None:
    secret_list = [s for s in (secrets or []) if s]

    def redact(_: Any, __: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
        if secret_list:
            for k, v in event.items():
                if isinstance(v, str):
                    event[k] = scrub(v, secret_list)
        return event

    if fmt == "auto":
        fmt = "human" if sys.stderr.isatty() else "logfmt"
    renderer: Any
    if fmt == "json":
        renderer = structlog.processors.JSONRenderer()
    elif fmt == "human":
        renderer = structlog.dev.ConsoleRenderer(colors=True)
    else:
        renderer = structlog.processors.KeyValueRenderer(
            key_order=["timestamp", "level", "event", "flow"], drop_missing=True
        )
    structlog.configure(
        processors=[
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,  # a crash's traceback, as one field
            redact,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(level),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=False,
    )
