"""The web app's roles (server/web/sessions.py ``page`` + server/web/views_users.py): every web
route × viewer and editor by the same rule as the API, the Users and Tokens pages (owner only), a
token shown once, and a user changing their own password."""

from __future__ import annotations

import re

from starlette.routing import Route
from test_web import HTML, _csrf, sign_in, web  # noqa: F401

from server.api.users import check_password, hash_password
from server.store import tokens
from server.store import web as web_store
from server.web import views_debugger

OPEN_TO_ALL = {("/sign-out", "POST"), ("/account/password", "POST")}
OWNER_ONLY = ("/users", "/tokens")


def _as(web, username: str, role: str) -> None:  # noqa: F811
    web_store.create_user(web.engine, username, hash_password("pass-" + username), role)
    assert sign_in(web, "pass-" + username, username).status_code == 303
    web.csrf = _csrf(web.get("/account", headers=HTML).text)


def _concrete(path: str) -> str:
    return re.sub(r"{(\w+)(?::(\w+))?}", lambda m: "1" if m.group(2) in ("int", "float") else "admin", path)


def test_every_web_route_by_role(web, monkeypatch):  # noqa: F811
    # The debugger's event stream would hold each request for its 15 s; the role is checked first.
    monkeypatch.setattr(views_debugger, "STREAM_SECONDS", 0.1)
    routes = [r for r in web.app.routes if isinstance(r, Route) and r.endpoint.__module__.startswith("server.web")
              and r.path not in ("/sign-in",)]
    for username, role in (("vera", "viewer"), ("ed", "editor")):
        _as(web, username, role)
        checked = 0
        for route in routes:
            for method in sorted(route.methods - {"HEAD"}):
                if (route.path, method) == ("/sign-out", "POST"):
                    continue  # would end the session under test; its rule is checked below
                url = _concrete(route.path)
                response = web.request(method, url, headers=HTML, data={"csrf_token": "wrong"},
                                       follow_redirects=False)
                owner_only = route.path.startswith(OWNER_ONLY)
                refused = owner_only or (method == "POST" and role == "viewer" and (route.path, method) not in OPEN_TO_ALL)
                what = (role, method, route.path, response.status_code)
                if refused:
                    assert response.status_code == 403 and "forbidden" in response.text, what
                else:
                    # Let through the role check: a wrong CSRF token is what stops a POST now.
                    assert response.status_code != 403 or "csrf" in response.text.lower(), what
                    assert "forbidden" not in response.text, what
                checked += 1
        assert checked >= 25


def test_a_viewer_is_told_why_a_save_is_refused(web):  # noqa: F811
    _as(web, "vera", "viewer")
    page = web.get("/sources", headers=HTML).text
    assert 'data-role="viewer"' in page and "change nothing" in page and 'href="/users"' not in page
    refused = web.post("/sources", headers=HTML, data={"csrf_token": web.csrf, "name": "Nope"})
    assert refused.status_code == 403 and "you are signed in as a viewer" in refused.text
    as_json = web.post("/sources", data={"csrf_token": web.csrf, "name": "Nope"})
    assert as_json.json()["code"] == "forbidden"


def test_owner_invites_changes_and_deletes_users(web):  # noqa: F811
    assert sign_in(web).status_code == 303
    web.csrf = _csrf(web.get("/users", headers=HTML).text)
    page = web.get("/users", headers=HTML).text
    assert 'href="/users" aria-current="page"' in page and "admin (you)" in page
    made = web.post("/users", headers=HTML, data={"csrf_token": web.csrf, "username": "ann", "password": "12345678",
                                                  "role": "editor"})
    assert "Created ann (editor)" in made.text and "12345678" not in made.text
    assert web_store.get_user(web.engine, "ann")["role"] == "editor"
    changed = web.post("/users/ann", headers=HTML, data={"csrf_token": web.csrf, "action": "role", "role": "viewer"})
    assert "ann is now viewer" in changed.text
    web.post("/users/ann", headers=HTML, data={"csrf_token": web.csrf, "action": "password", "password": "reset-1234"})
    assert check_password("reset-1234", web_store.get_user(web.engine, "ann")["password_hash"])
    last = web.post("/users/admin", headers=HTML, data={"csrf_token": web.csrf, "action": "role", "role": "editor"})
    assert "only owner" in last.text and web_store.get_user(web.engine, "admin")["role"] == "owner"
    gone = web.post("/users/ann", headers=HTML, data={"csrf_token": web.csrf, "action": "delete"})
    assert "Deleted ann" in gone.text and web_store.get_user(web.engine, "ann") is None


def test_tokens_page_shows_a_new_token_once_and_revokes(web):  # noqa: F811
    assert sign_in(web).status_code == 303
    web.csrf = _csrf(web.get("/tokens", headers=HTML).text)
    made = web.post("/tokens", headers=HTML, data={"csrf_token": web.csrf, "name": "grafana", "role": "viewer"})
    assert made.status_code == 201
    token = re.search(r'<code id="token-value">([^<]+)</code>', made.text).group(1)
    assert tokens.find_token(web.engine, token)["role"] == "viewer"
    again = web.get("/tokens", headers=HTML).text
    assert token not in again and "grafana" in again
    token_id = tokens.list_tokens(web.engine)[0]["id"]
    revoked = web.post(f"/tokens/{token_id}/revoke", headers=HTML, data={"csrf_token": web.csrf})
    assert "Token revoked" in revoked.text and tokens.find_token(web.engine, token) is None


def test_a_user_changes_their_own_password(web):  # noqa: F811
    _as(web, "vera", "viewer")
    wrong = web.post("/account/password", headers=HTML, data={
        "csrf_token": web.csrf, "current_password": "nope", "new_password": "brand-new-1", "confirm_password": "brand-new-1"})
    assert "The current password is not right" in wrong.text
    differ = web.post("/account/password", headers=HTML, data={
        "csrf_token": web.csrf, "current_password": "pass-vera", "new_password": "brand-new-1", "confirm_password": "x"})
    assert "differ" in differ.text
    done = web.post("/account/password", headers=HTML, data={
        "csrf_token": web.csrf, "current_password": "pass-vera", "new_password": "brand-new-1",
        "confirm_password": "brand-new-1"})
    assert "Your password is changed" in done.text
    assert check_password("brand-new-1", web_store.get_user(web.engine, "vera")["password_hash"])
