"""The web app's first account and sign-in checks (scrypt hashes: ``server.api.users``; throttling: ``throttle``).

``ensure_admin(config, engine)`` is what ``switchboard init`` and ``serve --demo`` call: it
creates the account named ``config.admin_user`` once, with ``config.admin_password`` or a
generated password, and returns that password only when it was just generated or set (so the
CLI prints it once).
"""

from __future__ import annotations

import functools
import secrets

from sqlalchemy import Engine

from server.api.users import check_password, hash_password
from server.config import Config
from server.store import web as store

def ensure_admin(config: Config, engine: Engine) -> tuple[str, str | None]:
    """Create the admin account if missing; return (user name, password shown once or None)."""
    username = config.admin_user or "admin"
    if store.get_user(engine, username) is not None:
        return username, None
    password = config.admin_password or secrets.token_urlsafe(12)
    # The first account is the owner (roles: docs/admin-api.md#roles).
    created = store.create_user(engine, username, hash_password(password), "owner")
    return username, password if created else None


def authenticate(engine: Engine, username: str, password: str) -> bool:
    user = store.get_user(engine, username.strip())
    if user is None:
        # Spend the same time as a real check so a missing user is not faster to discover.
        check_password(password, _dummy_hash())
        return False
    return check_password(password, user["password_hash"])


@functools.cache
def _dummy_hash() -> str:
    # Made when the web app's routes are built (routes() below), not at import: a scrypt hash
    # costs tens of milliseconds that every CLI command would pay. Not at the first sign-in
    # either: that one unknown name would then take twice as long as a known one.
    return hash_password(secrets.token_urlsafe(8))


def prepare() -> None:
    """Make what sign-in checks need before the first request (the web plane's routes call it)."""
    _dummy_hash()


def admin_lines(config: Config, engine: Engine) -> list[str]:
    """What ``switchboard init`` / ``serve --demo`` print: the password once, when just created."""
    username, password = ensure_admin(config, engine)
    if not password:
        return []
    return [f"Admin user: {username} / password: {password}   (shown once; web app: {config.origin}/sign-in)"]
