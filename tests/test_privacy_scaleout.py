"""Suppression holds on every server: a regulation created through one ``switchboard serve``
stops another one (its own process, same database) from storing the user's events within a
few seconds — through NOTIFY on PostgreSQL, the version check on SQLite."""

from __future__ import annotations

import time
import uuid

import httpx
import pytest

from delivery_flow import wait_until
from server.store import tokens, workspace
from test_privacy_regulations import logged

pytestmark = pytest.mark.timeout(120)


def test_a_suppression_reaches_every_server_process(db_url, engine, live_server_factory):
    source = workspace.create_source(engine, "Site")
    token = tokens.create_token(engine, "test")
    first, second = live_server_factory(db_url), live_server_factory(db_url)

    def send(server, user: str) -> str:
        message_id = f"m-{uuid.uuid4().hex}"
        answer = httpx.post(f"{server.url}/v1/track", json={"writeKey": source["write_key"], "event": "E",
                                                            "userId": user, "messageId": message_id})
        assert answer.status_code == 200, answer.text
        return message_id

    def stored(message_id: str) -> bool:
        return any(e["messageId"] == message_id for e in logged(engine))

    assert stored(send(second, "ada"))  # acknowledged after the commit: stored by now
    made = httpx.post(f"{first.url}/api/v1/regulations", headers={"Authorization": f"Bearer {token}"},
                      json={"type": "suppress", "user_ids": ["ada"]})
    assert made.status_code == 201
    started = time.monotonic()
    wait_until(lambda: not stored(send(second, "ada")), timeout=10, what="the other server to suppress ada")
    assert time.monotonic() - started < 5
    later = [send(server, "ada") for server in (first, second) for _ in range(5)]
    kept = [send(second, "bob"), send(first, "bob")]
    assert not any(stored(m) for m in later)
    assert all(stored(m) for m in kept)
