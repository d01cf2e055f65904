"""Connection URLs: parsing for each engine, and redaction so passwords never leak.

Systems are configured by URL (``postgresql://user:pw@host:port/db`` or ``mysql://…``). Every
place that shows a URL or an error that might contain one goes through :func:`redact` /
:func:`scrub`, so a password never reaches a log line, an error message or status output.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import parse_qsl, unquote, urlsplit

POSTGRES_SCHEMES = ("postgresql", "postgres")
MYSQL_SCHEMES = ("mysql", "mariadb")


@dataclass(frozen=True)
class ParsedUrl:
    engine: str  # "postgresql" | "mysql"
    user: str | None
    password: str | None
    host: str
    port: int
    database: str
    params: dict[str, str]


def parse(url: str) -> ParsedUrl:
    """Split a system URL; raises ValueError with a readable reason."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme in POSTGRES_SCHEMES:
        engine, default_port = "postgresql", 5432
    elif scheme in MYSQL_SCHEMES:
        engine, default_port = "mysql", 3306
    else:
        raise ValueError(
            f"unsupported URL scheme {parts.scheme!r}: use postgresql://… or mysql://…"
        )
    try:
        port = parts.port or default_port
    except ValueError:
        raise ValueError("the port in the URL is not a number") from None
    database = unquote(parts.path.lstrip("/"))
    if not database:
        raise ValueError("the URL names no database: add /DBNAME at the end")
    return ParsedUrl(
        engine=engine,
        user=unquote(parts.username) if parts.username else None,
        password=unquote(parts.password) if parts.password is not None else None,
        host=parts.hostname or "127.0.0.1",
        port=port,
        database=database,
        params=dict(parse_qsl(parts.query)),
    )


def redact(url: str) -> str:
    """The URL with any password replaced by ``***``."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.rsplit("@", 1)
    user = netloc[0].split(":", 1)[0]
    return parts._replace(netloc=f"{user}:***@{netloc[1]}").geturl()


def scrub(text: str, secrets: list[str]) -> str:
    """Remove every secret (and its URL-encoded form) from a message."""
    for secret in secrets:
        if secret:
            text = text.replace(secret, "***")
    return text
