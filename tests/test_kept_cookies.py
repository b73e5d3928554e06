"""Server-set cookies (server/ingest/kept_cookies.py): the collector's /keep sets again the id
cookies the browser sent, on the domain the page and the collector share, for a source with the
setting on; the setting is part of the source's versioned settings and of its bundle."""

from __future__ import annotations

import pytest
from starlette.testclient import TestClient
from test_web import signed_in, web  # noqa: F401 - fixtures: a signed-in web app

from server.app import create_app
from server.catalog import load_catalog
from server.cdn.bundles import build_bundle
from server.config import Config
from server.errors import ApiError
from server.ingest.kept_cookies import host_of, request_cookies, set_cookies
from server.store import tokens, workspace

ASK = {"domain": "example.com", "names": ["ajs_anonymous_id", "ajs_user_id"], "path": "/", "sameSite": "Lax",
       "secure": True, "maxage": 365}
SENT = "other=1; ajs_anonymous_id=5f0c6c1e-aaaa-4bbb-8ccc-123456789abc; ajs_user_id=user%40x"


def test_the_cookies_sent_are_set_again_with_the_cores_attributes():
    kept, headers = set_cookies(ASK, "https://www.example.com", "t.example.com", SENT)
    assert kept == ["ajs_anonymous_id", "ajs_user_id"]
    assert headers == [
        (b"set-cookie", b"ajs_anonymous_id=5f0c6c1e-aaaa-4bbb-8ccc-123456789abc; Path=/; Max-Age=31536000; "
                        b"SameSite=Lax; Domain=example.com; Secure"),
        (b"set-cookie", b"ajs_user_id=user%40x; Path=/; Max-Age=31536000; SameSite=Lax; Domain=example.com; Secure"),
    ]
    # A cookie the browser did not send (or sent empty) is not made up; the first of a name wins.
    kept, headers = set_cookies({**ASK, "names": ["ajs_user_id", "ajs_group_id"], "secure": False, "maxage": 1000},
                                "https://example.com", "example.com", "ajs_group_id=; ajs_user_id=a; ajs_user_id=b")
    assert kept == ["ajs_user_id"]
    assert headers == [(b"set-cookie", b"ajs_user_id=a; Path=/; Max-Age=34560000; SameSite=Lax; Domain=example.com")]
    # A host-only cookie (the core's choice on an IP or a one-label host): page and collector on one host.
    kept, headers = set_cookies({**ASK, "domain": "", "secure": False}, "http://127.0.0.1:8000", "127.0.0.1", SENT)
    assert kept == ["ajs_anonymous_id", "ajs_user_id"] and b"Domain" not in headers[0][1]


@pytest.mark.parametrize("body, origin, host, code", [
    (ASK, "", "t.example.com", "origin_required"),
    (ASK, "null", "t.example.com", "origin_required"),
    (ASK, "http://[::1", "t.example.com", "invalid_keep_request"),
    (ASK, "http://[zz]", "t.example.com", "invalid_keep_request"),
    (ASK, "https://www.example.org", "t.example.com", "invalid_keep_request"),  # the page is elsewhere
    (ASK, "https://www.example.com", "collector.other.net", "invalid_keep_request"),  # the browser would drop it
    (ASK, "https://notexample.com", "t.example.com", "invalid_keep_request"),  # a suffix is not a domain
    ({**ASK, "domain": ""}, "https://www.example.com", "t.example.com", "invalid_keep_request"),
    ({**ASK, "domain": "exa mple.com"}, "https://www.example.com", "t.example.com", "invalid_keep_request"),
    ({**ASK, "names": []}, "https://www.example.com", "t.example.com", "invalid_keep_request"),
    ({**ASK, "names": ["a", "b", "c", "d"]}, "https://www.example.com", "t.example.com", "invalid_keep_request"),
    ({**ASK, "names": ["a;b"]}, "https://www.example.com", "t.example.com", "invalid_keep_request"),
    ({**ASK, "path": "/; Domain=evil.com"}, "https://www.example.com", "t.example.com", "invalid_keep_request"),
    ({**ASK, "sameSite": "Whatever"}, "https://www.example.com", "t.example.com", "invalid_keep_request"),
    ({**ASK, "secure": "yes"}, "https://www.example.com", "t.example.com", "invalid_keep_request"),
    ({**ASK, "maxage": 0}, "https://www.example.com", "t.example.com", "invalid_keep_request"),
    ([ASK], "https://www.example.com", "t.example.com", "invalid_keep_request"),
])
def test_what_is_refused(body, origin, host, code):
    with pytest.raises(ApiError) as refused:
        set_cookies(body, origin, host, SENT)
    assert refused.value.status == 400 and refused.value.code == code and refused.value.message


def test_a_value_is_echoed_only_as_cookie_octets_and_helpers():
    kept, _ = set_cookies(ASK, "https://www.example.com", "t.example.com", 'ajs_anonymous_id="a b"; ajs_user_id=ok')
    assert kept == ["ajs_user_id"]  # a value a Set-Cookie could not carry as it came is left alone
    assert request_cookies(" a=1;b = 2; a=3; =x; c") == {"a": "1", "b": "2"}
    assert host_of("T.Example.com:8443") == "t.example.com" and host_of("[::1]:80") == "[::1]" and host_of("h") == "h"


@pytest.fixture
def collector(db_url, engine):
    app = create_app(Config(database_url=db_url, delivery_workers=False), engine=engine,
                     planes=["server.ingest", "server.admin"])
    source = workspace.create_source(engine, "Shop")
    with TestClient(app, base_url="https://t.example.com") as client:
        yield client, source, engine


def keep(client, source, origin="https://www.example.com", cookies=SENT, **body):
    headers = {"Content-Type": "text/plain", "Cookie": cookies, **({"Origin": origin} if origin else {})}
    return client.post("/v1/keep", json={"writeKey": source["write_key"], **ASK, **body}, headers=headers)


def test_the_endpoint_answers_for_a_source_with_the_setting_only(collector):
    client, source, engine = collector
    off = keep(client, source)
    assert off.status_code == 403 and off.json()["code"] == "server_cookies_off"
    assert off.headers["access-control-allow-origin"] == "https://www.example.com"  # the page can read why
    assert "set-cookie" not in off.headers

    token = tokens.create_token(engine, "test")
    patched = client.patch(f"/api/v1/sources/{source['id']}", json={"server_cookies": True},
                           headers={"Authorization": f"Bearer {token}"})
    assert patched.status_code == 200 and patched.json()["server_cookies"] is True
    on = keep(client, source)
    assert on.status_code == 200 and on.json() == {"kept": ["ajs_anonymous_id", "ajs_user_id"]}
    assert on.headers.get_list("set-cookie")[0].startswith("ajs_anonymous_id=5f0c6c1e-aaaa-4bbb-8ccc-123456789abc; ")
    assert on.headers["access-control-allow-origin"] == "https://www.example.com"
    assert on.headers["access-control-allow-credentials"] == "true" and on.headers["cache-control"] == "no-store"

    assert keep(client, source, origin=None).json()["code"] == "origin_required"
    assert keep(client, source, origin="https://evil.test").json()["code"] == "invalid_keep_request"
    bad_key = client.post("/v1/keep", json={**ASK, "writeKey": "nope"}, headers={"Origin": "https://www.example.com"})
    assert bad_key.status_code == 401 and bad_key.json()["code"] == "invalid_write_key"
    assert client.post("/v1/keep", content=b"[", headers={"Origin": "https://www.example.com"}).status_code == 400
    assert client.post("/v1/keep", content=b"x" * 5000).json()["code"] == "payload_too_large"
    not_bool = client.patch(f"/api/v1/sources/{source['id']}", json={"server_cookies": "yes"},
                            headers={"Authorization": f"Bearer {token}"})
    assert not_bool.status_code == 422 and not_bool.json()["field"] == "server_cookies"


def test_the_setting_is_versioned_rolled_back_and_in_the_bundle_only_when_on(engine):
    source = workspace.create_source(engine, "Shop")
    first = workspace.get_source(engine, source["id"])["settings_version"]
    assert workspace.update_source(engine, source["id"], server_cookies=True)["server_cookies"] is True
    assert workspace.get_source(engine, source["id"])["settings_version"] == first + 1
    workspace.update_source(engine, source["id"], server_cookies=True)  # unchanged: no new version
    assert workspace.get_source(engine, source["id"])["settings_version"] == first + 1
    config = Config(public_url="https://t.example.com")
    on = workspace.public_config(engine, source["write_key"])
    assert on["server_cookies"] is True
    body = build_bundle(config, load_catalog(), on).body.decode()
    assert '("https://t.example.com/v1/keep",' in body and "sb_kept" in body
    workspace.rollback(engine, source["id"], first)
    off = workspace.public_config(engine, source["write_key"])
    assert off["server_cookies"] is False and workspace.get_source(engine, source["id"])["server_cookies"] is False
    assert "/v1/keep" not in build_bundle(config, load_catalog(), off).body.decode()


def test_the_source_page_turns_it_on_and_off(signed_in):  # noqa: F811
    web, engine = signed_in, signed_in.engine
    source = workspace.create_source(engine, "Shop")
    assert 'name="server_cookies">' in web.get(f"/sources/{source['id']}").text  # unchecked
    done = web.post(f"/sources/{source['id']}/server-cookies", data={"csrf_token": web.csrf, "server_cookies": "on"})
    assert done.status_code == 200 and "id cookies once a day" in done.text
    assert 'name="server_cookies" checked>' in done.text
    assert workspace.get_source(engine, source["id"])["server_cookies"] is True
    off = web.post(f"/sources/{source['id']}/server-cookies", data={"csrf_token": web.csrf})
    assert "no longer asks" in off.text and workspace.get_source(engine, source["id"])["server_cookies"] is False
    assert web.post("/sources/999/server-cookies", data={"csrf_token": web.csrf}).status_code == 404


def test_the_cli_turns_it_on_and_off(tmp_path):
    import os
    import subprocess
    import sys
    from pathlib import Path

    env = {**os.environ, "SWITCHBOARD_DATABASE_URL": f"sqlite:///{tmp_path / 'cli.db'}", "SWITCHBOARD_LOG_LEVEL": "WARNING"}

    def cli(*args, expect=0):
        done = subprocess.run([sys.executable, "-m", "server.cli", *args], env=env, cwd=Path(__file__).parent.parent,
                              capture_output=True, text=True, timeout=60)
        assert done.returncode == expect, (args, done.stdout, done.stderr)
        return done

    cli("sources", "create", "Shop")
    assert "server-set cookies on" in cli("sources", "set", "Shop", "--server-cookies", "on").stdout
    assert "server-set cookies off" in cli("sources", "set", "Shop", "--server-cookies", "off").stdout
    nothing = cli("sources", "set", "Shop", expect=2)  # a usage mistake (server/cli_support.py)
    assert "--server-cookies" in nothing.stderr and "Traceback" not in nothing.stderr


def test_no_header_or_body_makes_it_fail_on_our_side(collector):
    """Whatever a client sends, the answer is ours: a 200 or a 4xx with a code, never a 500."""
    client, source, engine = collector
    workspace.update_source(engine, source["id"], server_cookies=True)
    origins = ["https://www.example.com", "http://[::1", "http://[zz]", "null", "https://a b", "x" * 5000, "https://www.example.com:99999"]
    hosts = ["t.example.com", "[::1]:80", "", "a:b:c", "T.EXAMPLE.COM:99999"]
    bodies = [{**ASK, "writeKey": source["write_key"]}, {"writeKey": source["write_key"], "domain": 7},
              {"writeKey": source["write_key"], **ASK, "maxage": True}, {"writeKey": source["write_key"], **ASK, "maxage": 1e300},
              {"writeKey": source["write_key"], **ASK, "names": [None]}, {"writeKey": source["write_key"], **ASK, "path": "/é"}]
    for origin in origins:
        for host in hosts:
            for body in bodies:
                headers = {"Origin": origin.encode(), "Host": host, "Cookie": (SENT + "; é=ü").encode()}
                answer = client.post("/v1/keep", json=body, headers=headers)
                assert answer.status_code in (200, 400), (origin, host, body, answer.text)
                assert answer.status_code == 200 or answer.json()["code"], answer.text
