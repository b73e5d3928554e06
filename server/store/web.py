"""Tables of the web app: admin users (scrypt password hashes) and recent failed sign-ins.

Failed sign-in attempts are kept in the database rather than in memory so that the limit holds
across every server process sharing the store (``switchboard serve --workers N``, PostgreSQL).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Column, Engine, Index, String, Table, func, select

from server.store.engine import read_only
from server.store.schema import Id, UTCDateTime, metadata
from server.store.workspace import now

admin_users = Table(
    "web_admin_users",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("username", String(200), nullable=False, unique=True),
    Column("password_hash", String(300), nullable=False),
    Column("created_at", UTCDateTime(), nullable=False),
)

sign_in_failures = Table(
    "web_sign_in_failures",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("key", String(300), nullable=False),
    Column("at", UTCDateTime(), nullable=False),
)
Index("ix_web_sign_in_failures_key_at", sign_in_failures.c.key, sign_in_failures.c.at)


def get_user(engine: Engine, username: str) -> dict[str, Any] | None:
    with read_only(engine) as conn:
        row = conn.execute(select(admin_users).where(admin_users.c.username == username)).one_or_none()
    return None if row is None else dict(row._mapping)


def create_user(engine: Engine, username: str, password_hash: str) -> bool:
    """Insert the user unless one with that name exists; True when this call created it."""
    with engine.begin() as conn:
        exists = conn.execute(select(admin_users.c.id).where(admin_users.c.username == username)).one_or_none()
        if exists is not None:
            return False
        conn.execute(admin_users.insert().values(username=username, password_hash=password_hash, created_at=now()))
    return True


def count_users(engine: Engine) -> int:
    with read_only(engine) as conn:
        return conn.execute(select(func.count()).select_from(admin_users)).scalar_one()


def record_failure(engine: Engine, key: str) -> None:
    cutoff = now() - timedelta(hours=1)
    with engine.begin() as conn:
        conn.execute(sign_in_failures.insert().values(key=key, at=now()))
        # Keep the table small: nothing older than an hour matters to any limit.
        conn.execute(sign_in_failures.delete().where(sign_in_failures.c.at < cutoff))


def failures_since(engine: Engine, key: str, since: datetime) -> int:
    with read_only(engine) as conn:
        return conn.execute(
            select(func.count()).select_from(sign_in_failures).where(
                sign_in_failures.c.key == key, sign_in_failures.c.at >= since
            )
        ).scalar_one()


def clear_failures(engine: Engine, key: str) -> None:
    with engine.begin() as conn:
        conn.execute(sign_in_failures.delete().where(sign_in_failures.c.key == key))
