"""Tables of the web app: admin users (scrypt password hashes), recent failed sign-ins and
signed-in sessions.

Failed sign-in attempts and sessions are kept in the database rather than in memory so that the
limit holds, and a sign-out takes effect, across every server process sharing the store
(``switchboard serve --workers N``, PostgreSQL) and across restarts.
"""

from __future__ import annotations

from datetime import timedelta
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
    # owner | editor | viewer (server/api/auth.py); the account made before roles existed is the owner.
    Column("role", String(20), nullable=False, server_default="owner"),
)

sign_in_failures = Table(
    "web_sign_in_failures",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("key", String(300), nullable=False),
    Column("at", UTCDateTime(), nullable=False),
)
Index("ix_web_sign_in_failures_key_at", sign_in_failures.c.key, sign_in_failures.c.at)

# One row per signed-in browser. The signed cookie carries only the id, so deleting the row ends
# that session at once, wherever the cookie was copied to. Looked up by primary key on every page.
web_sessions = Table(
    "web_sessions",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("username", String(200), nullable=False),
    Column("created_at", UTCDateTime(), nullable=False),
    Column("expires_at", UTCDateTime(), nullable=False, index=True),
)


def get_user(engine: Engine, username: str) -> dict[str, Any] | None:
    with read_only(engine) as conn:
        row = conn.execute(select(admin_users).where(admin_users.c.username == username)).one_or_none()
    return None if row is None else dict(row._mapping)


def create_user(engine: Engine, username: str, password_hash: str, role: str = "owner") -> bool:
    """Insert the user unless one with that name exists; True when this call created it."""
    with engine.begin() as conn:
        exists = conn.execute(select(admin_users.c.id).where(admin_users.c.username == username)).one_or_none()
        if exists is not None:
            return False
        conn.execute(admin_users.insert().values(
            username=username, password_hash=password_hash, role=role, created_at=now()))
    return True


class LastOwner(Exception):
    """The change would leave no owner, and with it nobody who can manage users."""


def list_users(engine: Engine) -> list[dict[str, Any]]:
    """Every user's id, username, role and created time — never the password hash."""
    cols = admin_users.c
    with read_only(engine) as conn:
        rows = conn.execute(select(cols.id, cols.username, cols.role, cols.created_at).order_by(cols.id)).all()
    return [dict(r._mapping) for r in rows]


def _other_owners(conn, username: str) -> int:
    """Owners other than ``username``. On PostgreSQL every owner row is locked (in id order, so
    two such transactions queue rather than deadlock) until commit: two owners demoting each
    other at once can't both succeed."""
    cols = admin_users.c
    owners = conn.execute(select(cols.username).where(cols.role == "owner").order_by(cols.id).with_for_update())
    return sum(1 for name in owners.scalars() if name != username)


def update_user(engine: Engine, username: str, *, role: str | None = None, password_hash: str | None = None) -> bool:
    """Change a user's role and/or password hash; False when there is no such user.

    Raises ``LastOwner`` rather than demote the only owner. The role is read on every page
    (``session_principal``), so a demotion applies to signed-in sessions at once.
    """
    values: dict[str, Any] = {}
    if role is not None:
        values["role"] = role
    if password_hash is not None:
        values["password_hash"] = password_hash
    with engine.begin() as conn:
        row = conn.execute(select(admin_users.c.role).where(admin_users.c.username == username)).one_or_none()
        if row is None:
            return False
        if role is not None and role != "owner" and row.role == "owner" and _other_owners(conn, username) == 0:
            raise LastOwner(username)
        if values:
            conn.execute(admin_users.update().where(admin_users.c.username == username).values(**values))
    return True


def delete_user(engine: Engine, username: str) -> bool:
    """Delete the user and end their sessions; False when there is no such user. ``LastOwner``
    when they are the only owner."""
    with engine.begin() as conn:
        row = conn.execute(select(admin_users.c.role).where(admin_users.c.username == username)).one_or_none()
        if row is None:
            return False
        if row.role == "owner" and _other_owners(conn, username) == 0:
            raise LastOwner(username)
        conn.execute(admin_users.delete().where(admin_users.c.username == username))
        conn.execute(web_sessions.delete().where(web_sessions.c.username == username))
    return True


def count_users(engine: Engine) -> int:
    with read_only(engine) as conn:
        return conn.execute(select(func.count()).select_from(admin_users)).scalar_one()


def create_session(
    engine: Engine, session_id: str, username: str, lifetime: timedelta, replaces: str | None = None
) -> None:
    """Record a new session; end ``replaces`` (the browser's previous session) in the same step."""
    at = now()
    with engine.begin() as conn:
        # Sign-in is rare and may do a little more: clear out sessions that ran out, so the table
        # holds only live sessions without a separate clean-up job.
        conn.execute(web_sessions.delete().where(web_sessions.c.expires_at <= at))
        if replaces:
            conn.execute(web_sessions.delete().where(web_sessions.c.id == replaces))
        conn.execute(web_sessions.insert().values(
            id=session_id, username=username, created_at=at, expires_at=at + lifetime))


def session_user(engine: Engine, session_id: str) -> str | None:
    """The user of a live session, or None when it was ended or has expired."""
    found = session_principal(engine, session_id)
    return None if found is None else found[0]


def session_principal(engine: Engine, session_id: str) -> tuple[str, str] | None:
    """(username, role) of a live session's user; None when the session ended or expired, or
    the user was deleted. The role is read on every page, so a demotion applies at once."""
    with read_only(engine) as conn:
        row = conn.execute(
            select(web_sessions.c.username, admin_users.c.role)
            .join(admin_users, admin_users.c.username == web_sessions.c.username)
            .where(web_sessions.c.id == session_id, web_sessions.c.expires_at > now())
        ).one_or_none()
    return None if row is None else (row.username, row.role)


def end_session(engine: Engine, session_id: str) -> None:
    with engine.begin() as conn:
        conn.execute(web_sessions.delete().where(web_sessions.c.id == session_id))
