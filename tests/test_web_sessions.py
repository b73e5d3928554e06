"""Server-side web sessions (server/web/sessions.py, table web_sessions): signing out ends a
session everywhere its cookie went, expiry is enforced by the server, sessions survive a restart,
and the cookie is Secure over https. The session tests run on SQLite and on PostgreSQL."""

from __future__ import annotations

import re
from contextlib import contextmanager
from datetime import timedelta

from sqlalchemy import select, update
from starlette.testclient import TestClient

from server.app import create_app
from server.config import Config
from server.store import open_store, workspace
from server.store import web as web_store
from server.web import accounts
from server.web.sessions import COOKIE

PASSWORD = "correct horse battery"
PLANES = ["server.health", "server.web"]


@contextmanager
def web_app(url: str, base_url: str = "http://testserver", **settings):
    """The web plane on ``url`` with the admin account; a new call is a restarted server."""
    config = Config(database_url=url, delivery_workers=False, admin_password=PASSWORD, **settings)
    engine = open_store(url)
    accounts.ensure_admin(config, engine)
    try:
        with TestClient(create_app(config, engine=engine, planes=PLANES), base_url=base_url) as client:
            client.engine = engine
            yield client
    finally:
        engine.dispose()


def _csrf(html: str) -> str:
    return re.search(r'name="csrf_token" value="([^"]+)"', html).group(1)


def sign_in(client):
    token = _csrf(client.get("/sign-in").text)
    response = client.post("/sign-in", data={"csrf_token": token, "username": "admin", "password": PASSWORD,
                                              "next": "/sources"}, follow_redirects=False)
    assert response.status_code == 303 and response.headers["location"] == "/sources"
    return response


def as_browser(client, cookie: str | None):
    """Make ``client`` a browser holding exactly ``cookie`` (None: no cookie at all)."""
    client.cookies.clear()
    if cookie is not None:
        client.cookies.set(COOKIE, cookie)
    return client


def session_rows(engine) -> list[dict]:
    with engine.connect() as conn:
        return [dict(r._mapping) for r in conn.execute(select(web_store.web_sessions))]


def test_a_cookie_copied_before_sign_out_is_refused_after_it_and_other_sessions_stay(db_url):
    with web_app(db_url) as web:
        sign_in(web)
        copied = web.cookies.get(COOKIE)
        copied_csrf = _csrf(web.get("/sources").text)
        as_browser(web, None)
        sign_in(web)
        other = web.cookies.get(COOKIE)
        assert len(session_rows(web.engine)) == 2  # one per browser

        as_browser(web, copied)
        signed_out = web.post("/sign-out", data={"csrf_token": copied_csrf}, follow_redirects=False)
        assert signed_out.status_code == 303 and signed_out.headers["location"] == "/sign-in"
        assert "You are signed out." in web.get("/sign-in").text

        anonymous = as_browser(web, None).get("/sources?format=json", follow_redirects=False)
        replayed = as_browser(web, copied).get("/sources?format=json", follow_redirects=False)
        assert replayed.status_code == anonymous.status_code == 303
        assert replayed.headers["location"] == anonymous.headers["location"] == "/sign-in?next=/sources%3Fformat%3Djson"
        before = workspace.count_sources(web.engine)
        post = as_browser(web, copied).post("/sources", data={"name": "After sign-out", "csrf_token": copied_csrf},
                                            follow_redirects=False)
        assert post.status_code == 303 and post.headers["location"] == "/sign-in?next=/"
        assert workspace.count_sources(web.engine) == before

        # The same user's other browser is still signed in.
        assert as_browser(web, other).get("/sources", follow_redirects=False).status_code == 200
        assert len(session_rows(web.engine)) == 1


def test_an_expired_session_is_refused_and_its_row_goes_at_the_next_sign_in(db_url):
    with web_app(db_url) as web:
        sign_in(web)
        expired = web.cookies.get(COOKIE)
        (row,) = session_rows(web.engine)
        assert row["username"] == "admin"
        assert row["expires_at"] - row["created_at"] == timedelta(hours=12)
        with web.engine.begin() as conn:
            conn.execute(update(web_store.web_sessions).values(expires_at=web_store.now() - timedelta(seconds=1)))

        assert web.get("/sources", follow_redirects=False).headers["location"] == "/sign-in?next=/sources"
        assert 'name="username"' in web.get("/sign-in").text  # the sign-in form, not a redirect

        as_browser(web, None)
        sign_in(web)
        assert [r["id"] for r in session_rows(web.engine)] != [row["id"]]
        assert len(session_rows(web.engine)) == 1  # the expired row was cleared out
        assert as_browser(web, expired).get("/sources", follow_redirects=False).status_code == 303


def test_signing_in_again_in_the_same_browser_replaces_its_session(db_url):
    with web_app(db_url) as web:
        sign_in(web)
        first = web.cookies.get(COOKIE)
        token = _csrf(web.get("/sources").text)
        again = web.post("/sign-in", data={"csrf_token": token, "username": "admin", "password": PASSWORD,
                                           "next": "/sources"}, follow_redirects=False)
        assert again.status_code == 303
        assert web.get("/sources", follow_redirects=False).status_code == 200
        assert len(session_rows(web.engine)) == 1
        assert as_browser(web, first).get("/sources", follow_redirects=False).status_code == 303


def test_a_session_survives_a_restart_but_not_a_new_secret_key(db_url):
    with web_app(db_url) as web:
        sign_in(web)
        cookie = web.cookies.get(COOKIE)
    with web_app(db_url) as restarted:
        page = as_browser(restarted, cookie).get("/sources", follow_redirects=False)
        assert page.status_code == 200 and "Sign out" in page.text
    with web_app(db_url, secret_key="a-new-key-ends-every-session") as rekeyed:
        assert as_browser(rekeyed, cookie).get("/sources", follow_redirects=False).status_code == 303


def test_a_cookie_of_the_previous_kind_naming_the_user_is_not_a_session(sqlite_url):
    # Before web_sessions the cookie held {"u": user}; a validly signed one must not sign anyone in.
    with web_app(sqlite_url) as web:
        web.get("/sign-in")
        old = web.app.state.web_serializer.dumps({"u": "admin", "c": "t" * 43})
        assert as_browser(web, old).get("/sources", follow_redirects=False).status_code == 303


def test_the_cookie_is_secure_over_https_and_not_over_http(sqlite_url):
    with web_app(sqlite_url, base_url="https://testserver") as web:
        cookie = sign_in(web).headers["set-cookie"].lower()
        assert "; secure" in cookie and "httponly" in cookie and "samesite=lax" in cookie
        assert web.get("/sources", follow_redirects=False).status_code == 200
    with web_app(sqlite_url) as web:
        cookie = sign_in(web).headers["set-cookie"].lower()
        assert "secure" not in cookie and "httponly" in cookie


def test_an_unknown_name_is_checked_against_a_hash_made_before_the_first_sign_in(sqlite_url):
    """A sign-in with an unknown user name spends a password check on a dummy hash, so that it
    takes as long as a wrong password. The hash is made when the web app is built: made at that
    first attempt, it would make the attempt twice as slow, and tell the name is unknown."""
    accounts._dummy_hash.cache_clear()
    with web_app(sqlite_url) as client:
        assert accounts._dummy_hash.cache_info().currsize == 1  # ready before any request
        token = _csrf(client.get("/sign-in").text)
        response = client.post("/sign-in", data={"csrf_token": token, "username": "nobody", "password": "x"})
        assert response.status_code == 401 and "do not match" in response.text
        assert accounts._dummy_hash.cache_info().misses == 1 and accounts._dummy_hash.cache_info().hits >= 1
