"""Web app pages carry a strict CSP and the anti-framing, referrer and no-sniff headers; the bundle
and the collector stay as they were (embeddable, CORS of their own); /demo exists only with
``serve --demo``. Against a real ``switchboard serve --demo``; templates are checked for anything
the CSP would block (the browser side is e2e/test_webapp.py, which fails on any CSP report)."""

from __future__ import annotations

import re
from pathlib import Path

import httpx
import pytest

from edge_live import admin_server
from server.store import open_store, workspace

ROOT = Path(__file__).resolve().parent.parent
PASSWORD = "headers-test-password-1"


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    live = admin_server(tmp_path_factory.mktemp("headers"), PASSWORD, "--demo")
    yield live
    live.stop()


@pytest.fixture(scope="module")
def signed_in(server):
    with httpx.Client(base_url=server.url, timeout=30) as client:
        token = re.search(r'name="csrf_token" value="([^"]+)"', client.get("/sign-in").text).group(1)
        response = client.post("/sign-in", data={"csrf_token": token, "username": "admin", "password": PASSWORD},
                               follow_redirects=False)
        assert response.status_code == 303
        yield client


def assert_page_headers(response: httpx.Response) -> None:
    csp = response.headers["content-security-policy"]
    directives = dict((d.strip().split(" ", 1) + [""])[:2] for d in csp.split(";"))
    assert directives["default-src"] == "'none'"
    assert directives["script-src"] == "'self'" and directives["style-src"] == "'self'"
    assert "unsafe-inline" not in csp and "unsafe-eval" not in csp
    assert directives["frame-ancestors"] == "'none'" and directives["base-uri"] == "'none'"
    assert directives["form-action"] == "'self'"
    assert response.headers["x-frame-options"] == "DENY"
    assert response.headers["referrer-policy"] == "same-origin"
    assert response.headers["x-content-type-options"] == "nosniff"


def test_sign_in_and_app_pages_send_the_security_headers(server, signed_in):
    assert_page_headers(httpx.get(server.url + "/sign-in", timeout=10))
    engine = open_store(server.env["SWITCHBOARD_DATABASE_URL"])
    source_id = workspace.list_sources(engine)[0]["id"]
    engine.dispose()
    for path in ("/sources", "/catalog", f"/sources/{source_id}", f"/sources/{source_id}/debugger",
                 f"/sources/{source_id}/history"):
        response = signed_in.get(path)
        assert response.status_code == 200, path
        assert_page_headers(response)
    # An error page a person reads carries them too.
    missing = signed_in.get("/sources/999999/debugger", headers={"accept": "text/html"})
    assert missing.status_code == 404
    assert_page_headers(missing)
    static = signed_in.get("/static/app.js")
    assert static.status_code == 200 and static.headers["x-content-type-options"] == "nosniff"


def test_the_bundle_and_the_collector_keep_their_own_headers(server):
    engine = open_store(server.env["SWITCHBOARD_DATABASE_URL"])
    write_key = workspace.list_sources(engine)[0]["write_key"]
    engine.dispose()
    bundle = httpx.get(f"{server.url}/analytics.js/v1/{write_key}/analytics.min.js", timeout=10)
    assert bundle.status_code == 200
    assert "content-security-policy" not in bundle.headers and "x-frame-options" not in bundle.headers
    track = httpx.post(server.url + "/v1/track", json={"writeKey": write_key, "event": "E", "userId": "u"},
                       headers={"origin": "https://shop.example"}, timeout=10)
    assert track.status_code == 200 and "content-security-policy" not in track.headers
    assert track.headers["access-control-allow-origin"]


def test_demo_is_served_with_the_demo_flag(server):
    page = httpx.get(server.url + "/demo", timeout=10)
    assert page.status_code == 200 and "Switchboard demo page" in page.text


TEMPLATES = sorted((ROOT / "server" / "templates").glob("*.html"))


@pytest.mark.parametrize("template", TEMPLATES, ids=lambda p: p.name)
def test_templates_hold_nothing_the_policy_would_block(template):
    html = template.read_text(encoding="utf-8")
    for tag in re.findall(r"<script\b[^>]*>", html):
        assert "src=" in tag or 'type="application/json"' in tag, f"inline script in {template.name}: {tag}"
    assert not re.search(r"<style\b", html), f"inline <style> in {template.name}"
    assert not re.search(r"\sstyle\s*=", html), f"style attribute in {template.name}"
    assert not re.search(r"\son[a-z]+\s*=", html, re.I), f"event-handler attribute in {template.name}"
    assert "javascript:" not in html.lower()


def test_the_static_scripts_inject_no_inline_code():
    for script in (ROOT / "static").glob("*.js"):
        text = script.read_text(encoding="utf-8")
        for banned in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval(", "new Function",
                       'setAttribute("style"', 'setAttribute("on'):
            assert banned not in text, f"{script.name} uses {banned}"
