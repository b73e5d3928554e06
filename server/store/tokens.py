"""Admin API tokens (only a SHA-256 of each is stored, with a name and a role) and small
installation facts.

Every request looks its token up here (``find_token``): there is no cache, so revoking a token
(deleting its row) makes it answer 401 at once on every server sharing the store. ``last_used_at``
is written at most once a minute per token, so a busy token costs one read per request, not a write.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from typing import Any

from datetime import timedelta

from sqlalchemy import Engine, select
from sqlalchemy.exc import IntegrityError

from server.store.engine import read_only
from server.store.schema import admin_tokens, app_state
from server.store.workspace import now

TOKEN_PREFIX = "sb_"
ROLES = ("viewer", "editor", "owner")  # weakest first; each can do what the ones before it can
LAST_USED_EVERY = timedelta(minutes=1)


def _hash(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def create_token(engine: Engine, name: str = "admin", role: str = "owner") -> str:
    """Create a token and return it in clear, the only time it is ever seen."""
    return issue_token(engine, name, role)["token"]


def issue_token(engine: Engine, name: str, role: str) -> dict[str, Any]:
    """Create a token: {"id", "name", "role", "token"} — the token in clear, shown this once."""
    if role not in ROLES:
        raise ValueError(f"role must be one of {', '.join(ROLES)}")
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    with engine.begin() as conn:
        new_id = conn.execute(admin_tokens.insert().values(
            name=name, role=role, token_hash=_hash(token), created_at=now())).inserted_primary_key[0]
    return {"id": new_id, "name": name, "role": role, "token": token}


def list_tokens(engine: Engine) -> list[dict[str, Any]]:
    """Every token's id, name, role, created and last used — never the token or its hash."""
    cols = admin_tokens.c
    with read_only(engine) as conn:
        rows = conn.execute(
            select(cols.id, cols.name, cols.role, cols.created_at, cols.last_used_at).order_by(cols.id)
        ).all()
    return [dict(r._mapping) for r in rows]


def revoke_token(engine: Engine, token_id: int) -> bool:
    """Delete the token; True when it existed. Its next request, on any server, answers 401."""
    with engine.begin() as conn:
        return conn.execute(admin_tokens.delete().where(admin_tokens.c.id == token_id)).rowcount > 0


def find_token(engine: Engine, token: str, bootstrap: str = "") -> dict[str, Any] | None:
    """The token's {"id", "name", "role"}, or None for an unknown (or revoked) token.

    The bootstrap token (``SWITCHBOARD_ADMIN_TOKEN``) is an owner with id None. Stored tokens are
    looked up by their hash, which an attacker cannot steer byte by byte.
    """
    if not token:
        return None
    if bootstrap and hmac.compare_digest(token.encode(), bootstrap.encode()):
        return {"id": None, "name": "bootstrap", "role": "owner"}
    digest = _hash(token)
    cols = admin_tokens.c
    with read_only(engine) as conn:
        row = conn.execute(
            select(cols.id, cols.name, cols.role, cols.token_hash, cols.last_used_at).where(cols.token_hash == digest)
        ).one_or_none()
    if row is None or not hmac.compare_digest(row.token_hash, digest):
        return None
    at = now()
    if row.last_used_at is None or at - row.last_used_at >= LAST_USED_EVERY:
        with engine.begin() as conn:
            conn.execute(admin_tokens.update().where(cols.id == row.id).values(last_used_at=at))
    return {"id": row.id, "name": row.name, "role": row.role}


def actor_of(found: dict[str, Any]) -> str:
    """What the audit records for a found token: ``token:<name>``, or ``api`` for the bootstrap token.
    The API and the CLI's ``--token`` both name their changes with it."""
    return "api" if found["id"] is None else f"token:{found['name']}"


def check_token(engine: Engine, token: str, bootstrap: str = "") -> bool:
    """True when ``token`` is the bootstrap token or a stored (not revoked) token."""
    return find_token(engine, token, bootstrap) is not None


def get_state(engine: Engine, key: str) -> str | None:
    with read_only(engine) as conn:
        return conn.execute(select(app_state.c.value).where(app_state.c.key == key)).scalar_one_or_none()


def get_or_create_state(engine: Engine, key: str, make) -> str:
    """Read ``key``; if absent, store ``make()`` under it (first writer wins across processes)."""
    value = get_state(engine, key)
    if value is not None:
        return value
    try:
        with engine.begin() as conn:
            value = conn.execute(select(app_state.c.value).where(app_state.c.key == key)).scalar_one_or_none()
            if value is None:
                value = make()
                conn.execute(app_state.insert().values(key=key, value=value))
    except IntegrityError:
        # PostgreSQL: another process inserted it between our read and our insert. Theirs wins.
        value = get_state(engine, key)
    return value
