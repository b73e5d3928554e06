"""Webhooks translator: the exact request a receiver gets, and a receiver checking X-Signature."""

from __future__ import annotations

import hashlib
import hmac

import orjson
import pytest

from delivery_vendor import Vendor, make_event, send
from server.destinations.webhooks import cloud


def verifying_receiver(secret: str):
    """Answers 200 only when X-Signature is the hex HMAC-SHA1 of the body; 401 otherwise."""

    def respond(record):
        expected = hmac.new(secret.encode(), record.body, hashlib.sha1).hexdigest()
        good = hmac.compare_digest(record.headers.get("x-signature", ""), expected)
        return (200 if good else 401), {}, b"ok" if good else b"bad signature"

    return respond


@pytest.mark.parametrize("kind", ["track", "page", "identify", "group", "alias", "screen"])
def test_every_call_type_is_posted_whole_with_headers_and_a_valid_signature(kind):
    event = make_event(kind, userId="u-1", event="Order Completed" if kind == "track" else None,
                       properties={"total": 12.5}, traits={"plan": "pro"}, groupId="g-1", previousId="p-1")
    with Vendor(verifying_receiver("s3cret")) as receiver:
        settings = {"url": receiver.url + "/hooks/in?x=1",
                    "headers": {"Authorization": "Bearer tok-xyz", "X-Team": "7"},
                    "shared_secret": "s3cret", "batch_size": 1}
        outcome = send(cloud.translate(event, settings), {})
        assert outcome.outcome == "delivered"
        [got] = receiver.snapshot()
    assert (got.method, got.path, got.query) == ("POST", "/hooks/in", {"x": "1"})
    assert got.headers["user-agent"] == "Segment.io/1.0"
    assert got.headers["content-type"] == "application/json"
    assert got.headers["authorization"] == "Bearer tok-xyz" and got.headers["x-team"] == "7"
    assert got.json() == orjson.loads(orjson.dumps(event))  # the whole event, as stored
    assert got.json()["messageId"] == event["messageId"]
    # What we keep about the attempt never shows the secret header values.
    # ("tok-xyz" is not hex, so the signature cannot contain it by chance, as it could "abc".)
    assert "tok-xyz" not in str(outcome.attempts[0].request["headers"])


def test_a_wrong_secret_fails_verification_and_is_a_permanent_error():
    event = make_event("track", event="Signed Up", userId="u-2")
    with Vendor(verifying_receiver("right")) as receiver:
        outcome = send(cloud.translate(event, {"url": receiver.url + "/h", "shared_secret": "wrong"}), {})
    assert outcome.outcome == "dead" and outcome.last.status == 401
    assert outcome.last.response == "bad signature"


def test_without_a_secret_there_is_no_signature_header():
    with Vendor() as receiver:
        send(cloud.translate(make_event("track", event="X"), {"url": receiver.url + "/h"}), {})
        [got] = receiver.snapshot()
    assert "x-signature" not in got.headers


def test_a_batch_is_one_json_array_signed_as_a_whole():
    events = [make_event("track", event=f"E{i}", userId="u") for i in range(3)]
    with Vendor(verifying_receiver("k")) as receiver:
        outcome = send(cloud.translate_batch(events, {"url": receiver.url + "/b", "shared_secret": "k"}), {})
        [got] = receiver.snapshot()
    assert outcome.outcome == "delivered"
    assert [e["messageId"] for e in got.json()] == [e["messageId"] for e in events]
