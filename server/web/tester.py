"""The Event Tester: send one sample event of a chosen type to one cloud-mode destination now,
and show the request that went out (secrets redacted) and the vendor's response.

It uses the delivery plane's own translator and sender, so what you see is what delivery does;
the sample event is sent directly and is not written to the event log.
"""

from __future__ import annotations

import importlib
import uuid
from datetime import datetime, timezone
from typing import Any

from server.catalog import Manifest, effective_settings

SAMPLE_USER = "switchboard-test-user"


def sample_event(call: str) -> dict[str, Any]:
    now = datetime.now(timezone.utc).isoformat().replace("+00:00", "Z")
    event: dict[str, Any] = {
        "type": call, "messageId": f"test-{uuid.uuid4()}", "timestamp": now, "sentAt": now, "receivedAt": now,
        "anonymousId": "switchboard-event-tester", "userId": SAMPLE_USER,
        "context": {"library": {"name": "switchboard-event-tester", "version": "1"},
                    "page": {"url": "https://example.com/tester", "path": "/tester", "title": "Event Tester"}},
        "integrations": {},
    }
    if call == "track":
        event.update(event="Test Event Fired", properties={"source": "Event Tester", "value": 1})
    elif call in ("page", "screen"):
        event.update(name="Event Tester", properties={"path": "/tester", "url": "https://example.com/tester"})
    elif call == "identify":
        event.update(traits={"email": "test@example.com", "name": "Test User"})
    elif call == "group":
        event.update(groupId="test-group", traits={"name": "Test Group"})
    elif call == "alias":
        event.update(previousId="switchboard-event-tester")
    return event


async def send_sample(manifest: Manifest, destination: dict[str, Any], call: str, *,
                      allow_private_egress: bool = False) -> dict[str, Any]:
    """{"event", "exchanges": [{"request", "status", "response", "error", "outcome", "latency_ms"}], …}.

    The egress rules apply as in delivery (``SWITCHBOARD_ALLOW_PRIVATE_EGRESS``): a URL that
    resolves to an internal address is refused before connecting, and the page says why."""
    router = importlib.import_module("server.delivery.router")
    sender_module = importlib.import_module("server.delivery.sender")
    event = sample_event(call)
    result: dict[str, Any] = {"type": call, "event": event, "exchanges": [], "error": None, "outcome": None}
    module = router.translator(manifest.slug)
    if module is None:
        result["error"] = f"{manifest.name} has no cloud-mode translator, so there is nothing to send."
        return result
    settings = effective_settings(manifest, destination["settings"], "cloud")
    try:
        requests = module.translate(event, settings)
    except Exception as exc:  # a missing or bad setting: say so, like delivery would
        result["error"] = f"Could not build the request: {type(exc).__name__}: {exc}"
        return result
    if not requests:
        result["error"] = f"{manifest.name} sends nothing for a {call} call with these settings."
        return result
    try:
        sender = sender_module.Sender(allow_private_egress=allow_private_egress)
    except ValueError as exc:  # an unusable proxy in the environment (HTTPS_PROXY=socks5://…)
        result["error"] = f"Cannot send from this server: {exc}"
        return result
    try:
        outcome = await sender.perform(requests)
    finally:
        await sender.aclose()
    result["outcome"] = outcome.outcome
    result["exchanges"] = [
        {"request": a.request, "status": a.status, "response": a.response, "error": a.error,
         "outcome": a.outcome, "latency_ms": a.latency_ms}
        for a in outcome.attempts
    ]
    return result
