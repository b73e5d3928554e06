"""The Alerts pages (signed in, as tests/test_web.py does), on SQLite and PostgreSQL: the nav link,
creating a rule through the API's validation, its state and history after a real evaluation,
editing, switching off, deleting, and the form's error messages."""

from __future__ import annotations

import asyncio

from test_web import HTML, signed_in_any, web_any  # noqa: F401

from server.alerts.evaluator import Evaluator
from server.config import Config
from server.store import alerts as store
from server.store import workspace
from tests.alerts_support import attempts
from tests.delivery_vendor import Vendor


def _form(web, **fields):
    return {"csrf_token": web.csrf, "name": "Vendor failing", "kind": "failure_rate", "threshold": "50",
            "window_minutes": "5", **fields}


def test_alerts_pages_create_show_history_edit_and_delete(signed_in_any, catalog):  # noqa: F811
    web = signed_in_any
    source = workspace.list_sources(web.engine)[0]
    watched = workspace.add_destination(web.engine, source["id"], slug="webhooks", mode="cloud", enabled=True,
                                        settings={"url": "https://vendor.example/hook"})
    page = web.get("/alerts", headers=HTML)
    assert page.status_code == 200 and '<a href="/alerts" aria-current="page">Alerts</a>' in page.text
    assert "No alert rules yet." in page.text
    with Vendor() as receiver:
        channel = workspace.add_destination(web.engine, source["id"], slug="webhooks", mode="cloud", enabled=False,
                                            settings={"url": receiver.url})
        made = web.post("/alerts", headers=HTML, data=_form(web, destination_id=str(watched["id"]),
                                                            channel=str(channel["id"])))
        assert made.status_code == 200 and "Created alert rule “Vendor failing”." in made.text
        (rule,) = store.list_rules(web.engine)
        assert rule["notify"] == {"destination_id": channel["id"]} and rule["threshold"] == 50
        assert "It has not fired yet." in made.text

        attempts(web.engine, watched["id"], ["dead", "retry"])
        config = Config(database_url=str(web.engine.url), allow_private_egress=True)
        asyncio.run(Evaluator(web.engine, catalog, config).run_once())
        receiver.wait_for(1)
    listed = web.get("/alerts", headers=HTML).text
    assert 'data-state="firing"' in listed and "100.0" in listed
    detail = web.get(f"/alerts/{rule['id']}", headers=HTML).text
    assert "100% of 2 delivery attempts" in detail and "<td>sent" in detail

    saved = web.post(f"/alerts/{rule['id']}", headers=HTML,
                     data=_form(web, name="Renamed", destination_id=str(watched["id"]), channel="email",
                                email="ops@example.com"))
    assert "Saved." in saved.text
    changed = store.get_rule(web.engine, rule["id"])
    assert changed["name"] == "Renamed" and changed["notify"] == {"email": ["ops@example.com"]}
    assert changed["enabled"] is False and changed["state"] == "ok"  # the unticked box switched it off

    assert web.get(f"/alerts/{rule['id']}?format=json").json()["history"][0]["kind"] == "firing"
    gone = web.post(f"/alerts/{rule['id']}/delete", headers=HTML, data={"csrf_token": web.csrf})
    assert "Alert rule deleted." in gone.text and store.list_rules(web.engine) == []
    assert web.get(f"/alerts/{rule['id']}", headers=HTML).status_code == 404


def test_alert_form_errors_say_what_is_expected(signed_in_any):  # noqa: F811
    web = signed_in_any
    source = workspace.list_sources(web.engine)[0]
    watched = workspace.add_destination(web.engine, source["id"], slug="webhooks", mode="cloud", enabled=True,
                                        settings={"url": "https://vendor.example/hook"})
    bad = web.post("/alerts", headers=HTML, data=_form(web, destination_id=str(watched["id"]), threshold="lots",
                                                       channel="email", email="ops@example.com"))
    assert "Alert rule not created: threshold must be a percentage from 0 to 100" in bad.text
    no_email = web.post("/alerts", headers=HTML, data=_form(web, destination_id=str(watched["id"]), channel="email"))
    assert "notify.email must list 1 to 20 e-mail addresses" in no_email.text
    assert store.list_rules(web.engine) == []
    assert web.post("/alerts", data=_form(web, destination_id=str(watched["id"]), csrf_token="x")).status_code == 403
