"""Users with roles and scoped tokens: the validated writes the admin API, the web app and the CLI
share (as ``service`` is for sources and destinations), and the scrypt password hashes.

A password or its hash never leaves here: ``user_json`` and ``token_json`` carry neither. Deleting
or demoting the only owner is refused with 409 ``last_owner``, so somebody can always manage users.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from typing import Any

from sqlalchemy import Engine

from server.errors import ApiError
from server.store import audit, tokens
from server.store import web as store

ROLES = tokens.ROLES
MIN_PASSWORD = 8

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


def _iso(value: Any) -> str | None:
    return value.isoformat() if value is not None else None


def user_json(row: dict[str, Any]) -> dict[str, Any]:
    return {"id": row["id"], "username": row["username"], "role": row["role"], "created": _iso(row["created_at"])}


def token_json(row: dict[str, Any]) -> dict[str, Any]:
    return {"id": row["id"], "name": row["name"], "role": row["role"], "created": _iso(row["created_at"]),
            "last_used": _iso(row["last_used_at"])}


def role_of(value: Any, field: str = "role") -> str:
    if value not in ROLES:
        raise ApiError(422, "validation_error", f"{field} must be one of: {', '.join(ROLES)}", field=field)
    return value


def username_of(value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ApiError(422, "validation_error", "username must be non-empty text", field="username")
    name = value.strip()
    if len(name) > 200 or any(c.isspace() or ord(c) < 32 for c in name):
        raise ApiError(422, "validation_error",
                       "username must be at most 200 characters, without spaces or control characters",
                       field="username")
    return name


def password_of(value: Any, field: str = "password") -> str:
    if not isinstance(value, str) or len(value) < MIN_PASSWORD:
        raise ApiError(422, "validation_error", f"{field} must be at least {MIN_PASSWORD} characters", field=field)
    if len(value) > 1000:
        raise ApiError(422, "validation_error", f"{field} must be at most 1000 characters", field=field)
    return value


def _user(engine: Engine, username: str) -> dict[str, Any]:
    row = store.get_user(engine, username)
    if row is None:
        raise ApiError(404, "not_found", f"No user {username!r}")
    return row


def _last_owner(username: str) -> ApiError:
    return ApiError(409, "last_owner", f"{username} is the only owner; make another user owner first")


def list_users(engine: Engine) -> list[dict[str, Any]]:
    return [user_json(r) for r in store.list_users(engine)]


def get_user(engine: Engine, username: str) -> dict[str, Any]:
    return user_json(_user(engine, username))


def create_user(engine: Engine, body: dict[str, Any], *, actor: str) -> dict[str, Any]:
    """{"username", "password", "role"?} (role defaults to viewer) → the user, without the password."""
    username = username_of(body.get("username"))
    password = password_of(body.get("password"))
    role = role_of(body.get("role", "viewer"))
    if not store.create_user(engine, username, hash_password(password), role):
        raise ApiError(409, "username_taken", f"A user named {username!r} exists")
    audit.record(engine, actor=actor, action="user.create", subject=f"user:{username}", changes={"role": role})
    return get_user(engine, username)


def update_user(engine: Engine, username: str, body: dict[str, Any], *, actor: str) -> dict[str, Any]:
    """{"role"?, "password"?}: an owner changes a role or sets a new password (the reset)."""
    before = _user(engine, username)
    unknown = set(body) - {"role", "password"}
    if unknown:
        field = sorted(unknown)[0]
        raise ApiError(422, "validation_error", f"{field} cannot be changed here", field=field)
    role = role_of(body["role"]) if "role" in body else None
    password = hash_password(password_of(body["password"])) if "password" in body else None
    try:
        store.update_user(engine, username, role=role, password_hash=password)
    except store.LastOwner:
        raise _last_owner(username) from None
    changes: dict[str, Any] = {}
    if role is not None and role != before["role"]:
        changes["role"] = {"before": before["role"], "after": role}
    if password is not None:
        changes["password"] = "reset"  # that it changed, never the value
    audit.record(engine, actor=actor, action="user.update", subject=f"user:{username}", changes=changes)
    return get_user(engine, username)


def delete_user(engine: Engine, username: str, *, actor: str) -> None:
    try:
        if not store.delete_user(engine, username):
            raise ApiError(404, "not_found", f"No user {username!r}")
    except store.LastOwner:
        raise _last_owner(username) from None
    audit.record(engine, actor=actor, action="user.delete", subject=f"user:{username}")


def change_own_password(engine: Engine, username: str, body: dict[str, Any]) -> None:
    """{"current_password", "new_password"}: the signed-in user changes their own password."""
    user = _user(engine, username)
    current = body.get("current_password")
    if not isinstance(current, str) or not check_password(current, user["password_hash"]):
        raise ApiError(422, "wrong_password", "The current password is not right", field="current_password")
    new = password_of(body.get("new_password"), "new_password")
    store.update_user(engine, username, password_hash=hash_password(new))
    audit.record(engine, actor=username, action="user.password", subject=f"user:{username}")


def create_token(engine: Engine, body: dict[str, Any], *, actor: str) -> dict[str, Any]:
    """{"name"?, "role"?} (role defaults to viewer) → {"id", "name", "role", "token"} shown once."""
    name = body.get("name", "api")
    if not isinstance(name, str) or not name.strip() or len(name) > 200 or any(ord(c) < 32 for c in name):
        raise ApiError(422, "validation_error", "name must be non-empty text of at most 200 characters", field="name")
    made = tokens.issue_token(engine, name.strip(), role_of(body.get("role", "viewer")))
    audit.record(engine, actor=actor, action="token.create", subject=f"token:{made['name']}",
                 changes={"role": made["role"]})
    return made


def list_tokens(engine: Engine) -> list[dict[str, Any]]:
    return [token_json(r) for r in tokens.list_tokens(engine)]


def revoke_token(engine: Engine, token_id: int, *, actor: str) -> None:
    if not tokens.revoke_token(engine, token_id):
        raise ApiError(404, "not_found", f"No token {token_id}")
    audit.record(engine, actor=actor, action="token.revoke", subject=f"token:{token_id}")
