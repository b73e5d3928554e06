"""Admin API tokens (only a SHA-256 of each is stored) and small installation facts."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from typing import Any

from sqlalchemy import Engine, select
from sqlalchemy.exc import IntegrityError

from server.store.engine import read_only
from server.store.schema import admin_tokens, app_state
from server.store.workspace import now

TOKEN_PREFIX = "sb_"


def _hash(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def create_token(engine: Engine, name: str = "admin") -> str:
    """Create a token and return it in clear, the only time it is ever seen."""
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    with engine.begin() as conn:
        conn.execute(admin_tokens.insert().values(name=name, token_hash=_hash(token), created_at=now()))
    return token


def list_tokens(engine: Engine) -> list[dict[str, Any]]:
    with read_only(engine) as conn:
        rows = conn.execute(
            select(admin_tokens.c.id, admin_tokens.c.name, admin_tokens.c.created_at).order_by(admin_tokens.c.id)
        ).all()
    return [dict(r._mapping) for r in rows]


def check_token(engine: Engine, token: str, bootstrap: str = "") -> bool:
    """True when ``token`` is the bootstrap token or matches a stored hash.

    The bootstrap comparison is constant-time; stored tokens are looked up by their hash, which
    an attacker cannot steer byte by byte.
    """
    if not token:
        return False
    if bootstrap and hmac.compare_digest(token.encode(), bootstrap.encode()):
        return True
    with read_only(engine) as conn:
        found = conn.execute(
            select(admin_tokens.c.token_hash).where(admin_tokens.c.token_hash == _hash(token))
        ).scalar_one_or_none()
    return found is not None and hmac.compare_digest(found, _hash(token))


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
