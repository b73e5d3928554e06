"""Tell someone that a rule fired or resolved: through a Slack or Webhooks destination, or by e-mail.

Destinations: the notification is a ``track`` event named ``Switchboard Alert`` (properties:
``state``, ``rule``, ``text``, ``value``…), translated by that destination's own translator with
its saved settings and sent by the delivery plane's sender (``send_sample``), so the egress rules
and proxies apply as to any delivery. Slack gets a template that posts ``properties.text``.
E-mail: ``smtplib`` in a thread, with the ``SWITCHBOARD_SMTP_*`` settings.

``send`` never raises: it answers the error text (or None), which the history records.
"""

from __future__ import annotations

import asyncio
import smtplib
from datetime import datetime, timezone
from email.message import EmailMessage
from typing import Any

from sqlalchemy import Engine
from starlette.concurrency import run_in_threadpool

from server.catalog import Catalog
from server.config import Config
from server.delivery import send_sample
from server.store import workspace

EVENT_NAME = "Switchboard Alert"
SMTP_TIMEOUT_S = 10.0


def alert_event(rule: dict[str, Any], state: str, text: str, value: float | None, history_id: int) -> dict[str, Any]:
    headline = f"[{state.upper()}] {rule['name']}: {text}"
    return {
        "type": "track", "event": EVENT_NAME, "messageId": f"switchboard-alert-{history_id}",
        "userId": "switchboard-alerts", "timestamp": datetime.now(timezone.utc).isoformat(),
        "properties": {
            "state": state, "text": headline, "value": value, "history_id": history_id,
            "rule": {"id": rule["id"], "name": rule["name"], "kind": rule["kind"], "threshold": rule["threshold"],
                     "destination_id": rule["destination_id"], "source_id": rule["source_id"]},
        },
    }


async def send(engine: Engine, catalog: Catalog, config: Config, rule: dict[str, Any], event: dict[str, Any]) -> str | None:
    try:
        notify = rule["notify"] or {}
        if "email" in notify:
            return await run_in_threadpool(_mail, config, notify["email"], event)
        return await _through_destination(engine, catalog, config, int(notify["destination_id"]), event)
    except asyncio.CancelledError:
        raise
    except Exception as exc:  # a broken channel is history, never a dead evaluator
        return f"{type(exc).__name__}: {exc}"


async def _through_destination(engine, catalog, config, destination_id: int, event: dict[str, Any]) -> str | None:
    try:
        destination = await run_in_threadpool(workspace.get_destination, engine, destination_id)
    except workspace.NotFound:
        return f"destination {destination_id} no longer exists"
    manifest = catalog.get(destination["slug"])
    if manifest is None:
        return f"destination {destination_id} has an unknown type {destination['slug']}"
    if destination["slug"] == "slack":
        destination = {**destination, "settings": {**destination["settings"],
                                                   "templates": {EVENT_NAME: "{{properties.text}}"}}}
    result = await send_sample(manifest, destination, event, allow_private_egress=config.allow_private_egress)
    if result["outcome"] == "delivered":
        return None
    if result["error"]:
        return result["error"]
    last = result["exchanges"][-1] if result["exchanges"] else {}
    return last.get("error") or f"not delivered ({result['outcome']})"


def _mail(config: Config, recipients: list[str], event: dict[str, Any]) -> str | None:
    if not config.smtp_host:
        return "SWITCHBOARD_SMTP_HOST is not set"
    props = event["properties"]
    message = EmailMessage()
    message["Subject"] = f"[Switchboard] {props['state']}: {props['rule']['name']}"
    message["From"] = config.smtp_from
    message["To"] = ", ".join(recipients)
    message.set_content(f"{props['text']}\n\nRule {props['rule']['id']} ({props['rule']['kind']}) is now "
                        f"{props['state']}.\n")
    with smtplib.SMTP(config.smtp_host, config.smtp_port, timeout=SMTP_TIMEOUT_S) as smtp:
        if config.smtp_starttls:
            smtp.starttls()
        if config.smtp_user:
            smtp.login(config.smtp_user, config.smtp_password)
        smtp.send_message(message)
    return None
