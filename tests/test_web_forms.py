"""The settings forms as a person meets them: what they typed survives an error re-render, secrets
included, while a stored secret still never comes back into a page; and the catalog search finds a
destination by its other names ("Facebook", "GA4")."""

from __future__ import annotations

import re

from server.store import workspace
from test_web import signed_in, web  # noqa: F401  (fixtures)

HTML = {"accept": "text/html"}
SECRET, HEADER = "typed-shared-secret-42", "Bearer typed-header-token"


def _input_value(html: str, name: str) -> str | None:
    match = re.search(r'<input[^>]*name="%s"[^>]*value="([^"]*)"' % re.escape(name), html)
    return match.group(1) if match else None


def test_secrets_typed_on_the_setup_form_survive_an_error_in_another_field(signed_in):
    bad = signed_in.post("/catalog/webhooks/configure", headers=HTML, data={
        "csrf_token": signed_in.csrf, "source": "1", "mode": "cloud", "url": "not a url",
        "shared_secret": SECRET, "headers.k": ["Authorization", ""], "headers.v": [HEADER, ""], "batch_size": "x"})
    assert bad.status_code == 422
    html = bad.text
    assert "Nothing was saved" in html
    assert _input_value(html, "shared_secret") == SECRET
    assert _input_value(html, "headers.k") == "Authorization" and _input_value(html, "headers.v") == HEADER
    assert _input_value(html, "url") == "not a url"
    # Saving the re-shown form (as the browser posts it back) creates the destination with its secrets.
    ok = signed_in.post("/catalog/webhooks/configure", follow_redirects=False, data={
        "csrf_token": signed_in.csrf, "source": "1", "mode": "cloud", "url": "https://example.com/hook",
        "shared_secret": _input_value(html, "shared_secret"), "headers.k": ["Authorization", ""],
        "headers.v": [_input_value(html, "headers.v"), ""], "batch_size": "10"})
    assert ok.status_code == 303, ok.text
    dest = workspace.get_destination(signed_in.engine, int(ok.headers["location"].rsplit("/", 1)[1]))
    assert dest["settings"]["shared_secret"] == SECRET
    assert dest["settings"]["headers"] == {"Authorization": HEADER}


def _webhook(client) -> str:
    r = client.post("/catalog/webhooks/configure", follow_redirects=False, data={
        "csrf_token": client.csrf, "source": "1", "mode": "cloud", "url": "https://example.com/hook",
        "shared_secret": "stored-secret-value", "headers.k": ["X-Stored"], "headers.v": ["stored-header-value"]})
    assert r.status_code == 303, r.text
    return r.headers["location"]


def test_an_error_on_a_saved_destination_echoes_new_secrets_but_never_the_stored_ones(signed_in):
    url = _webhook(signed_in)
    # The secret left empty: the stored one is kept and not shown after the error.
    kept = signed_in.post(url + "/settings", headers=HTML, data={
        "csrf_token": signed_in.csrf, "url": "nope", "shared_secret": "", "headers.k": [""], "headers.v": [""]})
    assert kept.status_code == 422
    assert "stored-secret-value" not in kept.text and "stored-header-value" not in kept.text
    assert _input_value(kept.text, "shared_secret") == ""
    # A new secret typed with an error elsewhere comes back in that same answer.
    typed = signed_in.post(url + "/settings", headers=HTML, data={
        "csrf_token": signed_in.csrf, "url": "nope", "shared_secret": "brand-new-secret",
        "headers.k": [""], "headers.v": [""]})
    assert typed.status_code == 422
    assert _input_value(typed.text, "shared_secret") == "brand-new-secret"
    assert "stored-secret-value" not in typed.text and "stored-header-value" not in typed.text
    # And is not saved (the whole form was refused): the page shows neither afterwards.
    page = signed_in.get(url).text
    assert "brand-new-secret" not in page and "stored-secret-value" not in page


def test_catalog_tiles_carry_aliases_and_keywords_for_the_search(signed_in):
    tiles = {t["slug"]: t for t in signed_in.get("/catalog?format=json").json()["destinations"]}
    assert "facebook" in tiles["meta_pixel"]["search"]
    assert "ga4" in tiles["google_analytics_4"]["search"]
    assert "ga4" not in tiles["meta_pixel"]["search"] and "facebook" not in tiles["google_analytics_4"]["search"]
    html = signed_in.get("/catalog", headers=HTML).text
    assert re.search(r'data-search="[^"]*ga4[^"]*"', html)
