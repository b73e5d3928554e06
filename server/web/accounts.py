"""The web app's admin account: scrypt password hashes, first-run creation (throttling: ``throttle``).

``ensure_admin(config, engine)`` is what ``switchboard init`` and ``serve --demo`` call: it
creates the account named ``config.admin_user`` once, with ``config.admin_password`` or a
generated password, and returns that password only when it was just generated or set (so the
CLI prints it once).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets

from sqlalchemy import Engine

from server.config import Config
from server.store import web as store

# scrypt cost: n=2**14, r=8 is ~16 MiB and ~50 ms per check — fine for a sign-in form.
_N, _R, _P = 2**14, 8, 1


def hash_password(password: str) -> str:
    salt = secrets.token_bytes(16)
    digest = hashlib.scrypt(password.encode(), salt=salt, n=_N, r=_R, p=_P, dklen=32)
    b64 = base64.urlsafe_b64encode
    return f"scrypt${_N}${_R}${_P}${b64(salt).decode()}${b64(digest).decode()}"


def check_password(password: str, stored: str) -> bool:
    try:
        scheme, n, r, p, salt, digest = stored.split("$")
        if scheme != "scrypt":
            return False
        expected = base64.urlsafe_b64decode(digest)
        actual = hashlib.scrypt(
            password.encode(), salt=base64.urlsafe_b64decode(salt), n=int(n), r=int(r), p=int(p),
            dklen=len(expected),
        )
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(actual, expected)


def ensure_admin(config: Config, engine: Engine) -> tuple[str, str | None]:
    """Create the admin account if missing; return (user name, password shown once or None)."""
    username = config.admin_user or "admin"
    if store.get_user(engine, username) is not None:
        return username, None
    password = config.admin_password or secrets.token_urlsafe(12)
    created = store.create_user(engine, username, hash_password(password))
    return username, password if created else None



def authenticate(engine: Engine, username: str, password: str) -> bool:
    user = store.get_user(engine, username.strip())
    if user is None:
        # Spend the same time as a real check so a missing user is not faster to discover.
        check_password(password, _DUMMY_HASH)
        return False
    return check_password(password, user["password_hash"])


_DUMMY_HASH = hash_password(secrets.token_urlsafe(8))


def admin_lines(config: Config, engine: Engine) -> list[str]:
    """What ``switchboard init`` / ``serve --demo`` print: the password once, when just created."""
    username, password = ensure_admin(config, engine)
    if not password:
        return []
    return [f"Admin user: {username} / password: {password}   (shown once; web app: {config.origin}/sign-in)"]
