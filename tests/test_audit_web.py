"""The Audit log page (signed in, as tests/test_web.py does): sign-ins (successful and failed; a
name that is no account is not recorded)
and changes made in the web app are entries with the session's user and the browser's address
and user agent; the page filters like the API; a secret setting's value appears nowhere on it."""

from __future__ import annotations

from test_web import HTML, PASSWORD, sign_in, signed_in, web  # noqa: F401

from server.store import audit

SECRET = "web-secret-value-77"


def test_web_changes_and_sign_ins_are_on_the_audit_page(web):  # noqa: F811
    assert sign_in(web, password="wrong").status_code == 401
    assert sign_in(web, password=PASSWORD).status_code == 303
    csrf = web.get("/sources").text.split('name="csrf_token" value="', 1)[1].split('"', 1)[0]
    made = web.post("/catalog/webhooks/configure", follow_redirects=False, data={
        "csrf_token": csrf, "source": "1", "mode": "cloud", "url": "https://example.com/hook", "shared_secret": SECRET})
    dest_url = made.headers["location"]
    web.post(dest_url + "/settings", data={"csrf_token": csrf, "url": "https://example.com/other", "shared_secret": ""})
    web.post(dest_url + "/enabled", data={"csrf_token": csrf, "enabled": "true"})

    rows = list(reversed(audit.list_entries(web.engine)))
    mine = [r for r in rows if r["action"] in ("sign_in", "sign_in.failed") or r["actor"] == "admin"]
    assert [r["action"] for r in mine][-5:] == [
        "sign_in.failed", "sign_in", "destination.create", "destination.update", "destination.update"]
    assert all(r["origin"] == {"address": "testclient", "user_agent": "testclient"} for r in mine)
    assert mine[-2]["changes"]["settings.url"] == {"before": "https://example.com/hook", "after": "https://example.com/other"}
    assert "settings.shared_secret" not in mine[-2]["changes"]  # kept as it was: no change

    page = web.get("/audit", headers=HTML)
    assert page.status_code == 200 and '<a href="/audit" aria-current="page">Audit log</a>' in page.text
    assert "sign_in.failed" in page.text and "destination.create" in page.text
    assert "https://example.com/hook → https://example.com/other" in page.text
    assert "enabled: False → True" in page.text
    for url in ("/audit", "/audit?format=json", "/audit?subject=destination", "/api/v1/audit"):
        assert SECRET not in web.get(url).text, url

    only = web.get("/audit?action=sign_in&format=json").json()["entries"]
    assert {e["action"] for e in only} == {"sign_in", "sign_in.failed"}
    assert [e["action"] for e in web.get("/audit?subject=destination&format=json").json()["entries"]][:3] == [
        "destination.update", "destination.update", "destination.create"]
    bad = web.get("/audit?since=soon", headers=HTML)
    assert bad.status_code == 400 and "since must be an ISO 8601 date" in bad.text


def test_a_failed_sign_in_as_no_account_does_not_record_what_was_typed(web):  # noqa: F811
    typed = "my-Password-typed-as-a-name"
    assert sign_in(web, username=typed, password="x").status_code == 401
    (entry,) = audit.list_entries(web.engine, action="sign_in.failed")
    assert entry["actor"] == "(unknown user)" and entry["subject"] == "user:(unknown user)"
    assert typed not in repr(audit.list_entries(web.engine))


def test_the_page_pages_back_with_its_filters(signed_in):  # noqa: F811
    for n in range(105):
        audit.record(signed_in.engine, actor="bulk", action="source.update", subject=f"source:{n}")
    first = signed_in.get("/audit?actor=bulk", headers=HTML).text
    assert first.count(">bulk</a>") == 100
    older = first.split('<a href="/audit?actor=bulk&amp;before=', 1)[1].split('"', 1)[0]
    second = signed_in.get(f"/audit?actor=bulk&before={older}", headers=HTML).text
    assert second.count(">bulk</a>") == 5 and "Older entries" not in second


def test_filters_and_replays_from_the_web_app_are_entries(signed_in):  # noqa: F811
    from server.store import workspace

    dest = workspace.add_destination(signed_in.engine, 1, slug="webhooks", mode="cloud", enabled=False,
                                     settings={"url": "https://example.com/hook"})
    added = signed_in.post(f"/destinations/{dest['id']}/filters",
                           data={"csrf_token": signed_in.csrf, "if": 'event = "Spam"', "action": "drop"})
    assert added.status_code == 200
    replayed = signed_in.post(f"/destinations/{dest['id']}/replay", data={"csrf_token": signed_in.csrf})
    assert "Queued 0 dead letters again" in replayed.text
    rows = audit.list_entries(signed_in.engine, subject=f"destination:{dest['id']}")
    assert [(r["action"], r["actor"]) for r in rows] == [
        ("replay.dead_letters", "admin"), ("filters.added", "admin"), ("destination.create", "system")]
    assert rows[0]["origin"]["address"] == "testclient" and rows[0]["changes"]["counts"] == {"replayed": 0}
