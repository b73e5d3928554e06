"""The Privacy page (signed in, as tests/test_web.py does): it renders, creates a regulation
through the same validation as the API, shows its status and the disk use, and the governance
log lists it. On SQLite and PostgreSQL."""

from __future__ import annotations

from test_web import HTML, signed_in_any, web_any  # noqa: F401

from server.store import regulations, workspace


def test_privacy_page_creates_and_lists_regulations(signed_in_any):  # noqa: F811
    web = signed_in_any
    page = web.get("/privacy", headers=HTML)
    assert page.status_code == 200
    assert '<a href="/privacy" aria-current="page">Privacy</a>' in page.text
    assert "send a deletion request to each vendor" in page.text and "Store size on disk" in page.text
    assert "No regulations yet." in page.text

    made = web.post("/privacy", headers=HTML, data={"csrf_token": web.csrf, "type": "suppress",
                                                   "user_ids": "ada\r\nSmith, Ann\r\n \r\n", "source": ""})
    assert made.status_code == 200 and "Created regulation" in made.text  # followed to /privacy
    (regulation,) = regulations.list_regulations(web.engine)
    # One id per line, as typed: "Smith, Ann" is one person, not "Smith" and "Ann".
    assert regulation["type"] == "suppress" and regulation["user_ids"] == ["ada", "Smith, Ann"]
    assert regulation["status"] == "finished" and regulation["actor"] == "admin"
    listed = web.get("/privacy", headers=HTML).text
    assert "<code>ada</code> <code>Smith, Ann</code>" in listed and ">finished<" in listed

    refused = web.post("/privacy", headers=HTML, data={"csrf_token": web.csrf, "type": "delete", "user_ids": " "})
    assert "Regulation not created: user_ids must be a non-empty list" in refused.text
    assert len(regulations.list_regulations(web.engine)) == 1
    no_csrf = web.post("/privacy", data={"type": "delete", "user_ids": "ada"})
    assert no_csrf.status_code == 403 and len(regulations.list_regulations(web.engine)) == 1

    log = web.get("/governance", headers=HTML)
    assert log.status_code == 200 and f"regulation {regulation['id']}" in log.text and "admin" in log.text
    assert web.get("/privacy?format=json").json()["regulations"][0]["id"] == regulation["id"]


def test_the_source_page_counts_suppressed_events(signed_in_any):  # noqa: F811
    web = signed_in_any
    source = workspace.list_sources(web.engine)[0]
    assert "suppressed-events" not in web.get(f"/sources/{source['id']}", headers=HTML).text
    made = web.post("/privacy", headers=HTML, data={"csrf_token": web.csrf, "type": "suppress", "user_ids": "ada",
                                                   "source": str(source["id"])})
    assert "Created regulation" in made.text
    for _ in range(3):
        assert web.post("/v1/track", json={"writeKey": source["write_key"], "event": "E", "userId": "ada"}).status_code == 200
    web.app.state.collector.suppressions.flush()  # what its thread does every 2 s
    page = web.get(f"/sources/{source['id']}", headers=HTML).text
    assert "3 events of suppressed users were acknowledged but not" in page
