"""Webhooks: POST the event JSON, exactly as stored, to the configured URL.

Headers: ``User-Agent: Segment.io/1.0``, ``Content-Type: application/json``, the custom headers,
and with a shared secret ``X-Signature`` = hex HMAC-SHA1 of the exact body bytes. With
``batch_size`` > 1 the body is a JSON array of events and the signature covers that whole body
(as the Actions webhook signs the whole payload).
"""

from __future__ import annotations

import hashlib
import hmac
from typing import Any

import orjson

from server.destinations.request import OutgoingRequest


def sign(secret: str, body: bytes) -> str:
    return hmac.new(secret.encode(), body, hashlib.sha1).hexdigest()


def _request(body: bytes, settings: dict[str, Any], key: str | None) -> OutgoingRequest:
    custom = {str(k): str(v) for k, v in (settings.get("headers") or {}).items()}
    headers = {"User-Agent": "Segment.io/1.0", "Content-Type": "application/json", **custom}
    secret = settings.get("shared_secret")
    if secret:
        headers["X-Signature"] = sign(secret, body)
    return OutgoingRequest("POST", settings["url"], headers, body=body, idempotency_key=key,
                           secrets=tuple(filter(None, (secret, *custom.values()))))


def translate(event: dict[str, Any], settings: dict[str, Any]) -> list[OutgoingRequest]:
    return [_request(orjson.dumps(event), settings, event.get("messageId"))]


def translate_batch(batch: list[dict[str, Any]], settings: dict[str, Any]) -> list[OutgoingRequest]:
    return [_request(orjson.dumps(batch), settings, batch[0].get("messageId") if batch else None)]
