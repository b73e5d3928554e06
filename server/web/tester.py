"""The Event Tester: send one sample event of a chosen type to one cloud-mode destination now,
and show the request that went out (secrets redacted) and the vendor's response.

It uses the delivery plane's own translator and sender, so what you see is what delivery does;
the sample event is sent directly and is not written to the event log.
"""

from __future__ import annotations

import uuid
from datetime import datetime, timezone
from typing import Any

from server import delivery
from server.catalog import Manifest

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
    """{"event", "exchanges": [{"request", "status", "response", "error", "outcome", "latency_ms"}], …}."""
    return await delivery.send_sample(manifest, destination, sample_event(call),
                                      allow_private_egress=allow_private_egress)
