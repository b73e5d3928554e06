"""Alert notifications over real connections on 127.0.0.1: a Webhooks destination (signed with its
shared secret), a Slack destination, an SMTP server (aiosmtpd), and the egress guard."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
from email import message_from_bytes

import pytest
from aiosmtpd.controller import Controller

from server.alerts import notify
from server.alerts.evaluator import Evaluator
from server.config import Config
from server.store import alerts as store
from server.store import workspace
from tests.alerts_support import attempts, failure_rule, workspace_with
from tests.delivery_vendor import Vendor
from tests.pgserver import free_port


class Inbox:
    def __init__(self):
        self.messages: list[tuple[str, list[str], bytes]] = []

    async def handle_DATA(self, server, session, envelope):
        self.messages.append((envelope.mail_from, list(envelope.rcpt_tos), envelope.content))
        return "250 OK"


@pytest.fixture
def smtp():
    inbox = Inbox()
    controller = Controller(inbox, hostname="127.0.0.1", port=free_port())
    controller.start()
    try:
        yield inbox, controller.port
    finally:
        controller.stop()


def _config(db_url, **settings) -> Config:
    return Config(database_url=db_url, alert_interval_s=0.05, **{"allow_private_egress": True, **settings})


def _fire(engine, catalog, config, rule_body_ws, **rule) -> dict:
    ws = rule_body_ws
    created = failure_rule(engine, ws, **rule)
    attempts(engine, ws["watched"]["id"], ["dead", "dead"])
    made = asyncio.run(Evaluator(engine, catalog, config).run_once())
    assert len(made) == 1
    [event] = store.history(engine, created["id"])
    return event


def test_webhook_notification_is_signed_with_the_destinations_shared_secret(engine, catalog, db_url):
    with Vendor() as receiver:
        ws = workspace_with(engine, receiver.url + "/hook")
        workspace.update_destination(engine, ws["channel"]["id"],
                                     settings={"url": receiver.url + "/hook", "shared_secret": "s3cret"})
        event = _fire(engine, catalog, _config(db_url), ws)
        [request] = receiver.wait_for(1)
    assert event["notify_status"] == "sent"
    assert request.path == "/hook"
    assert request.headers["x-signature"] == hmac.new(b"s3cret", request.body, hashlib.sha1).hexdigest()
    body = request.json()
    assert body["properties"]["rule"]["kind"] == "failure_rate"
    assert body["properties"]["text"].startswith("[FIRING] Vendor failing: 100% of 2 delivery attempts")


def test_slack_notification_posts_the_alert_text(engine, catalog, db_url):
    with Vendor() as slack:
        ws = workspace_with(engine, slack.url + "/services/T0/B0/xyz", slug="slack")
        event = _fire(engine, catalog, _config(db_url), ws)
        [request] = slack.wait_for(1)
    assert event["notify_status"] == "sent"
    assert request.json()["text"].startswith("[FIRING] Vendor failing: 100% of 2")


def test_email_notification_through_a_local_smtp_server(engine, catalog, db_url, smtp):
    inbox, port = smtp
    config = _config(db_url, smtp_host="127.0.0.1", smtp_port=port, smtp_starttls=False,
                     smtp_from="alerts@switchboard.test")
    with Vendor() as unused:
        ws = workspace_with(engine, unused.url)
    event = _fire(engine, catalog, config, ws, notify={"email": ["ops@example.com", "oncall@example.com"]})
    assert event["notify_status"] == "sent", event["notify_error"]
    [(sender, recipients, content)] = inbox.messages
    assert sender == "alerts@switchboard.test"
    assert recipients == ["ops@example.com", "oncall@example.com"]
    mail = message_from_bytes(content)
    assert mail["Subject"] == "[Switchboard] firing: Vendor failing"
    assert "100% of 2 delivery attempts" in mail.get_payload()


def test_email_failures_are_recorded(engine, catalog, db_url):
    with Vendor() as unused:
        ws = workspace_with(engine, unused.url)
    unset = _fire(engine, catalog, _config(db_url), ws, notify={"email": ["ops@example.com"]})
    assert unset["notify_status"] == "failed" and "SWITCHBOARD_SMTP_HOST" in unset["notify_error"]


def test_the_egress_guard_refuses_a_loopback_receiver_unless_private_egress_is_allowed(engine, catalog, db_url):
    with Vendor() as receiver:
        ws = workspace_with(engine, receiver.url)
        event = _fire(engine, catalog, _config(db_url, allow_private_egress=False), ws)
        assert receiver.snapshot() == []
    assert event["notify_status"] == "failed" and "refused" in event["notify_error"]


def test_send_never_raises(engine, catalog, db_url):
    rule = {"id": 1, "name": "x", "kind": "failure_rate", "threshold": 1, "destination_id": 1, "source_id": None,
            "notify": {"destination_id": 999}}
    event = notify.alert_event(rule, "firing", "text", 1.0, 1)
    error = asyncio.run(notify.send(engine, catalog, _config(db_url), rule, event))
    assert error == "destination 999 no longer exists"
    broken = {**rule, "notify": {"destination_id": "not a number"}}
    assert "ValueError" in asyncio.run(notify.send(engine, catalog, _config(db_url), broken, event))
