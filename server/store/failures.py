"""Which database errors mean "the store cannot take writes right now" (retry later) rather
than "this request is wrong" or "this is a bug".

Locked (SQLite busy timeout ran out), disk or database full, read-only file or transaction,
I/O errors, lost or refused connections, an exhausted connection pool: the client did nothing
wrong and the same request will succeed once the store recovers, so the answer is a 503 with
``Retry-After`` — never a 500. Constraint violations and programming errors are not in this set.
"""

from __future__ import annotations

from sqlalchemy import exc as sa

RETRY_AFTER = "5"  # seconds, in every 503 the store's state causes


def is_unavailable(exc: BaseException) -> bool:
    if isinstance(exc, (sa.OperationalError, sa.TimeoutError)):
        return True
    if isinstance(exc, sa.DBAPIError) and exc.connection_invalidated:
        return True
    if isinstance(exc, sa.InternalError):  # PostgreSQL: "cannot execute … in a read-only transaction"
        return "read-only" in str(exc.orig) or "read only" in str(exc.orig)
    return False


_CATEGORIES = (
    ("locked", "the database is locked by another connection"),
    ("busy", "the database is locked by another connection"),
    ("full", "the disk or database is full"),
    ("no space", "the disk or database is full"),
    ("readonly", "the database is read-only"),
    ("read-only", "the database is read-only"),
    ("read only", "the database is read-only"),
    ("unable to open", "the database cannot be opened"),
    ("connect", "the database cannot be reached"),
    ("timeout", "the database cannot be reached"),
)


def category(reason: str) -> str:
    """What an unauthenticated answer may say about a failure: its kind, never paths or hosts."""
    lowered = reason.lower()
    for word, text in _CATEGORIES:
        if word in lowered:
            return text
    return "the database reported an error"


def describe(exc: BaseException) -> str:
    """One line for logs and messages: the driver's reason, not SQLAlchemy's wrapper text."""
    reason = str(getattr(exc, "orig", None) or exc).strip()
    return reason.splitlines()[0][:200] if reason else type(exc).__name__
