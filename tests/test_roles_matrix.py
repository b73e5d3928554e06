"""The role matrix (issue #17): every /api/ route of the full app × owner, editor, viewer, a revoked
token and no token, against the one rule written out here independently of server/api/auth.py:

- no token or a revoked token → 401 ``unauthorized``;
- users, tokens → owner only; ``/api/v1/me`` → everyone;
- every other read (GET) → viewer and up; every other write → editor and up;
- refused → 403 ``forbidden``; allowed → anything but 401/403 (the store is empty, so 404 or 422
  are fine answers: what matters is that the role check let the request through).

A route added later is walked automatically; if it forgets the rule (or needs an override the rule
here does not know), this test fails.
"""

from __future__ import annotations

import pytest
from starlette.testclient import TestClient
from test_admin_api import _all_routes, _concrete, full_app  # noqa: F401  (full_app: a fixture)

from server.store import tokens

RANK = {"viewer": 0, "editor": 1, "owner": 2}


def expected_role(method: str, path: str) -> str:
    if path == "/api/v1/me":
        return "viewer"
    if path.startswith(("/api/v1/users", "/api/v1/tokens")):
        return "owner"
    return "viewer" if method == "GET" else "editor"



@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_every_api_route_by_role(full_app, engine):
    # Token id 1 is the one DELETE /api/v1/tokens/1 revokes when an owner is allowed to: not ours.
    tokens.create_token(engine, "sacrificial", "viewer")
    held = {role: tokens.create_token(engine, role, role) for role in ("viewer", "editor", "owner")}
    revoked = tokens.issue_token(engine, "revoked", "owner")
    assert tokens.revoke_token(engine, revoked["id"])

    client = TestClient(full_app, raise_server_exceptions=False)
    seen: dict[str, int] = {}
    for path, route in _all_routes(full_app.routes):
        if not path.startswith("/api/v1/"):  # /api/docs is a web app page (signed-in browsers)
            continue
        for method in sorted((route.methods or {"GET"}) - {"HEAD"}):
            url, needed = _concrete(path), expected_role(method, path)
            for who, headers in (("none", {}), ("revoked", {"Authorization": f"Bearer {revoked['token']}"})):
                response = client.request(method, url, headers=headers, json={})
                assert response.status_code == 401, (who, method, path, response.text)
                assert response.json()["code"] == "unauthorized"
            for role, token in held.items():
                response = client.request(method, url, headers={"Authorization": f"Bearer {token}"}, json={})
                what = (role, method, path, response.status_code, response.text[:200])
                if RANK[role] >= RANK[needed]:
                    assert response.status_code not in (401, 403), what
                    assert response.status_code < 500, what
                else:
                    assert response.status_code == 403, what
                    body = response.json()
                    assert body["code"] == "forbidden" and needed in body["message"], what
                seen[f"{method} {path}"] = 1
    # The walk reached the routes this issue added and the older planes' routes.
    for key in ("GET /api/v1/users", "POST /api/v1/users", "PATCH /api/v1/users/{username:str}",
                "DELETE /api/v1/users/{username:str}", "GET /api/v1/tokens", "POST /api/v1/tokens",
                "DELETE /api/v1/tokens/{id:int}", "GET /api/v1/me", "GET /api/v1/sources",
                "DELETE /api/v1/destinations/{id:int}"):
        assert key in seen, key
    assert len(seen) >= 30
    # The OpenAPI document states each operation's role, by the same rule.
    document = client.get("/api/v1/openapi.json", headers={"Authorization": f"Bearer {held['viewer']}"}).json()
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            assert operation["x-switchboard-role"] == expected_role(method.upper(), path), (method, path)
    # The owner's token was never revoked along the way (the sacrificial id 1 was).
    assert client.get("/api/v1/me", headers={"Authorization": f"Bearer {held['owner']}"}).json() == {
        "actor": "token:owner", "role": "owner"}
