"""Test support for alerts: a workspace with a watched destination and a notification channel,
and delivery outcomes written into the real store as the delivery workers record them."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any

from sqlalchemy import update

from server.api import alerts as service
from server.store import workspace
from server.store.delivery import delivery_attempts, write_transaction


def workspace_with(engine, receiver_url: str, *, slug: str = "webhooks") -> dict[str, Any]:
    """A source, a watched webhook destination (the vendor) and a switched-off one to notify through."""
    source = workspace.create_source(engine, "Site")
    watched = workspace.add_destination(engine, source["id"], slug="webhooks", mode="cloud", enabled=True,
                                        settings={"url": "https://vendor.example/hook"})
    settings = {"url": receiver_url} if slug == "webhooks" else {"webhook_url": receiver_url}
    channel = workspace.add_destination(engine, source["id"], slug=slug, mode="cloud", enabled=False,
                                        settings=settings)
    return {"source": source, "watched": watched, "channel": channel}


def failure_rule(engine, ws: dict[str, Any], **overrides: Any) -> dict[str, Any]:
    body = {"name": "Vendor failing", "kind": "failure_rate", "destination_id": ws["watched"]["id"],
            "threshold": 50, "window_minutes": 5, "notify": {"destination_id": ws["channel"]["id"]}, **overrides}
    return service.create(engine, body, actor="test")


def attempts(engine, destination_id: int, outcomes: list[str], at: datetime | None = None) -> None:
    at = at or datetime.now(timezone.utc)
    with write_transaction(engine) as conn:
        conn.execute(delivery_attempts.insert(), [
            {"job_id": 1, "destination_id": destination_id, "at": at, "outcome": outcome} for outcome in outcomes])


def age_attempts(engine, destination_id: int, seconds: float) -> None:
    """Move every recorded attempt of the destination ``seconds`` into the past (out of a window)."""
    with write_transaction(engine) as conn:
        conn.execute(update(delivery_attempts).where(delivery_attempts.c.destination_id == destination_id)
                     .values(at=datetime.now(timezone.utc) - timedelta(seconds=seconds)))
