"""/api/docs: the admin API's reference for people, behind sign-in, and its OpenAPI document
reachable from a signed-in browser session (the bearer-token URL answers 401 to a browser)."""

from __future__ import annotations

from test_web import signed_in, web  # noqa: F401  (fixtures)

HTML = {"accept": "text/html"}


def test_api_docs_need_sign_in(web):
    for url in ("/api/docs", "/api/docs/openapi.json"):
        for headers in (HTML, {"Authorization": "Bearer not-a-session"}, {}):
            r = web.get(url, headers=headers, follow_redirects=False)
            assert r.status_code == 303 and r.headers["location"].startswith("/sign-in"), (url, headers)
            assert "openapi" not in r.text and "/api/v1/sources" not in r.text


def test_api_docs_page_loads_the_vendored_swagger_ui_under_the_csp(signed_in):
    r = signed_in.get("/api/docs", headers=HTML)
    assert r.status_code == 200
    assert "/static/vendor/swagger-ui/swagger-ui-bundle.js" in r.text and "/static/api-docs.js" in r.text
    assert "script-src 'self'" in r.headers["content-security-policy"]
    for asset in ("/static/vendor/swagger-ui/swagger-ui-bundle.js", "/static/vendor/swagger-ui/swagger-ui.css",
                  "/static/api-docs.js", "/static/vendor/swagger-ui/LICENSE"):
        assert signed_in.get(asset).status_code == 200, asset


def test_the_openapi_document_reaches_a_signed_in_browser(signed_in):
    assert signed_in.get("/api/v1/openapi.json").status_code == 401  # the API itself wants a token
    r = signed_in.get("/api/docs/openapi.json", headers=HTML)
    assert r.status_code == 200 and r.headers["content-type"].startswith("application/json")
    doc = r.json()
    assert doc["openapi"].startswith("3.") and "/api/v1/sources/{id}/rotate-write-key" in doc["paths"]
    assert "/api/docs" not in doc["paths"]  # the page for people is no API route
